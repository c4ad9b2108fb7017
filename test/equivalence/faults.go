package main

// Faults injected during the converted run (-fault), and what each must lead to.

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
)

func scaleWebhook(n int) error {
	ns := envOr("CHART_NS", "tekton-oci-transport")
	if _, err := kc(nil, "-n", ns, "scale", "deployment", "tekton-oci-transport", fmt.Sprintf("--replicas=%d", n)); err != nil {
		return err
	}
	if n > 0 {
		_, err := kc(nil, "-n", ns, "rollout", "status", "deployment/tekton-oci-transport", "--timeout=120s")
		return err
	}
	// wait until no webhook pod is left (the Service has no endpoint)
	for i := 0; i < 60; i++ {
		out, err := kc(nil, "-n", ns, "get", "pods", "-l", "app.kubernetes.io/component=webhook", "-o", "name")
		if err == nil && strings.TrimSpace(string(out)) == "" {
			return nil
		}
		time.Sleep(time.Second)
	}
	return errors.New("webhook pods still there after 60s")
}

// restartRegistryWhen takes the registry down (its pod deleted) for 4 s as
// soon as the step `work` of task's TaskRun in the converted run starts: its
// push, a second later, meets no registry and must retry.
func (c *kase) restartRegistryWhen(task string) string {
	deadline := time.Now().Add(c.timeout)
	for time.Now().Before(deadline) {
		var trs struct{ Items []obj }
		if err := kcJSON(&trs, "-n", c.ns, "get", "taskruns", "-l", "tekton.dev/pipelineRun=oci,tekton.dev/pipelineTask="+task); err == nil {
			for _, tr := range trs.Items {
				for _, st := range list(m(tr, "status"), "steps") {
					// every step container of a pod "runs" from the start (the
					// entrypoint holds it): the step before `work` ending is
					// what says `work` runs, and its push comes next.
					if s(st.(obj), "name") == stepBefore && m(st, "terminated") != nil {
						start := time.Now()
						old, _ := kc(nil, "-n", registryNS, "get", "pods", "-l", "app=registry", "-o", "jsonpath={.items[*].metadata.name}")
						// down for 4 s (scaled to zero: the pod is deleted), then back
						if _, err := kc(nil, "-n", registryNS, "scale", "deployment", "registry", "--replicas=0"); err != nil {
							return "stopping the registry: " + err.Error()
						}
						time.Sleep(4 * time.Second)
						if _, err := kc(nil, "-n", registryNS, "scale", "deployment", "registry", "--replicas=1"); err != nil {
							return "starting the registry: " + err.Error()
						}
						for time.Since(start) < 2*time.Minute {
							out, _ := kc(nil, "-n", registryNS, "get", "pods", "-l", "app=registry", "-o",
								`jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
							for _, l := range strings.Split(string(out), "\n") {
								if f := strings.Fields(l); len(f) == 2 && f[1] == "True" && !strings.Contains(string(old), f[0]) {
									return fmt.Sprintf("registry pod %s deleted while %s ran; a new one was ready %s later", strings.TrimSpace(string(old)), task, time.Since(start).Round(100*time.Millisecond))
								}
							}
							time.Sleep(200 * time.Millisecond)
						}
						return "registry not back after 2 minutes"
					}
				}
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	return "task " + task + " never ran: no fault injected"
}

// ---- registry-data-lost: the registry lost the run's data mid-run

// registryClaim is the claim the test bed's registry keeps its data on
// (test/cluster/up.sh: a hostPath StorageClass, so on this machine), and
// repositoriesDir where CNCF Distribution's filesystem driver keeps each
// repository (rootdirectory /var/lib/registry is the claim's root).
const (
	registryClaim   = "registry-data"
	repositoriesDir = "docker/registry/v2/repositories"
)

// registryStorage is the folder on this machine that holds the registry's
// repositories: the hostPath of the volume bound to its claim.
func registryStorage() (string, error) {
	vol, err := kc(nil, "-n", registryNS, "get", "pvc", registryClaim, "-o", "jsonpath={.spec.volumeName}")
	if err != nil {
		return "", err
	}
	hp, err := kc(nil, "get", "pv", strings.TrimSpace(string(vol)), "-o", "jsonpath={.spec.hostPath.path}")
	if err != nil {
		return "", err
	}
	if strings.TrimSpace(string(hp)) == "" {
		return "", fmt.Errorf("the registry's claim %s/%s is not a hostPath volume on this machine", registryNS, registryClaim)
	}
	dir := filepath.Join(strings.TrimSpace(string(hp)), repositoriesDir)
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("the registry's storage is not here: %w", err)
	}
	return dir, nil
}

// consumers are the tasks that bind a converted workspace downstream of producer.
func consumers(producer string, tasks []*ptask, converted map[string]bool) []*ptask {
	var out []*ptask
	for _, t := range tasks {
		if !ancestors(t, tasks)[producer] {
			continue
		}
		for w := range converted {
			if bindsWS(t, w) {
				out = append(out, t)
				break
			}
		}
	}
	return out
}

// loseRegistryDataWhen deletes the converted run's repositories from the
// registry's storage as soon as producer's TaskRun has succeeded (its push is
// done), before its consumer's pull: the fault case puts a task that only
// sleeps between them. It returns what it did; c.faultFailed says the fault
// could not be injected. It gives up when stop is closed (the run ended).
func (c *kase) loseRegistryDataWhen(producer string, tasks []*ptask, converted map[string]bool, stop <-chan struct{}) string {
	fail := func(format string, a ...any) string {
		c.faultFailed = true
		return fmt.Sprintf(format, a...)
	}
	root, err := registryStorage()
	if err != nil {
		return fail("registry data not deleted: %v", err)
	}
	cons := map[string]bool{}
	for _, t := range consumers(producer, tasks, converted) {
		cons[t.name] = true
	}
	for {
		select {
		case <-stop:
			return fail("registry data not deleted: the run ended before %s succeeded", producer)
		case <-time.After(300 * time.Millisecond):
		}
		var trs struct{ Items []obj }
		if err := kcJSON(&trs, "-n", c.ns, "get", "taskruns", "-l", "tekton.dev/pipelineRun=oci"); err != nil {
			continue
		}
		done, started := false, []string{}
		for _, tr := range trs.Items {
			pt := s(m(tr, "metadata", "labels"), "tekton.dev/pipelineTask")
			for _, cond := range list(m(tr, "status"), "conditions") {
				if pt == producer && s(cond.(obj), "type") == "Succeeded" && s(cond.(obj), "status") == "True" {
					done = true
				}
			}
			if cons[pt] {
				started = append(started, pt)
			}
		}
		if !done {
			continue
		}
		if len(started) > 0 {
			return fail("registry data not deleted: consumer %s already started when %s succeeded (the case needs a slower task between them)", strings.Join(started, ","), producer)
		}
		uid := s(m(trs.Items[0], "metadata", "labels"), "tekton.dev/pipelineRunUID")
		if uid == "" {
			return fail("registry data not deleted: no tekton.dev/pipelineRunUID label on the TaskRuns")
		}
		var gone []string
		for w := range converted {
			dir := filepath.Join(root, repoPrefix, c.ns, uid, transform.RepositoryComponent(w))
			if _, err := os.Stat(dir); err != nil {
				return fail("registry data not deleted: %v (did %s push?)", err, producer)
			}
			if err := os.RemoveAll(dir); err != nil {
				return fail("registry data not deleted: %v", err)
			}
			gone = append(gone, dir)
		}
		sort.Strings(gone)
		return fmt.Sprintf("%s succeeded; deleted %s before any consumer (%s) started", producer, strings.Join(gone, " "), strings.Join(slices.Sorted(maps.Keys(cons)), ","))
	}
}

// pullMissingExit is the pull step's exit code for an artifact that a
// producer which ran should have left in the registry and that is gone.
const pullMissingExit = 4

// dataLostProblems checks the outcome the registry-data-lost fault must have,
// instead of equivalence: the PVC run succeeded; the converted run failed,
// loudly and where the data went missing: every consumer of producer that
// ran stopped at a pull step that exited 4 saying what `is missing`, before
// any of its own steps ran (a consumer that silently saw an empty workspace
// would be the worst outcome).
func dataLostProblems(pvc, oci *runResult, producer string, tasks []*ptask, converted map[string]bool) []string {
	var out []string
	if !strings.HasPrefix(pvc.status, "True") {
		out = append(out, fmt.Sprintf("the PVC run did not succeed: %s", pvc.status))
	}
	if !strings.HasPrefix(oci.status, "False") {
		out = append(out, fmt.Sprintf("the converted run did not fail: %s", oci.status))
	}
	if st := statuses(oci.taskRuns[producer]); !strings.HasPrefix(st, "True") {
		out = append(out, fmt.Sprintf("producer %s: converted %s, it must have succeeded before the data was lost", producer, st))
	}
	ran := 0
	for _, t := range consumers(producer, tasks, converted) {
		for _, tr := range oci.taskRuns[t.name] {
			ran++
			loud := false
			for name, st := range tr.steps {
				switch {
				case strings.HasPrefix(name, "oci-transport-pull-") && st.terminated && st.exitCode == pullMissingExit && strings.Contains(tr.logs[name], "is missing"):
					loud = true
				case strings.HasPrefix(name, "oci-transport-pull-"):
				case st.ran():
					out = append(out, fmt.Sprintf("consumer %s: step %s ran (%s, exit %d) although its workspace could not be pulled", tr.name, name, st.reason, st.exitCode))
				}
			}
			if !loud {
				out = append(out, fmt.Sprintf("consumer %s: no oci-transport-pull-* step exited %d with `is missing` in its log: %s", tr.name, pullMissingExit, pullSummary(tr)))
			}
		}
	}
	if ran == 0 {
		out = append(out, fmt.Sprintf("no consumer of %s ran in the converted run: the fault was not exercised", producer))
	}
	sort.Strings(out)
	return out
}

// pullSummary says how a TaskRun's pull steps ended, with their last log line.
func pullSummary(tr *taskRun) string {
	var out []string
	for name, st := range tr.steps {
		if strings.HasPrefix(name, "oci-transport-pull-") {
			log := strings.TrimSpace(tr.logs[name])
			if i := strings.LastIndex(log, "\n"); i >= 0 {
				log = log[i+1:]
			}
			out = append(out, fmt.Sprintf("%s exit %d (%s) %q", name, st.exitCode, st.reason, log))
		}
	}
	if len(out) == 0 {
		return "no pull step ended"
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}
