package main

// Faults injected during the converted run (-fault), and what each must lead to.

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
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

// registryPods lists zot's pods: "name Ready" per line.
func registryPods() string {
	out, _ := kc(nil, "-n", registryNS, "get", "pods", "-l", registrySelector, "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
	return string(out)
}

// registryPodNames are the names of zot's pods now.
func registryPodNames() []string {
	var names []string
	for _, l := range strings.Split(registryPods(), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// waitNewRegistryPod waits until a zot pod that is none of old is Ready;
// it returns its name.
func waitNewRegistryPod(old []string, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, l := range strings.Split(registryPods(), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[1] == "True" && !slices.Contains(old, f[0]) {
				return f[0], nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", fmt.Errorf("no new registry pod ready after %s", within)
}

// restartRegistryWhen takes the registry down (zot's Deployment scaled to
// zero: its pod is deleted) for 4 s as soon as the step `work` of task's
// TaskRun in the converted run starts: its push, a second later, meets no
// registry and must retry. The run can only succeed if zot keeps its data
// across pods (run.sh puts it on a claim for this case).
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
						old := registryPodNames()
						// down for 4 s (scaled to zero: the pod is deleted), then back
						if _, err := kc(nil, "-n", registryNS, "scale", "deployment", registryService, "--replicas=0"); err != nil {
							return "stopping the registry: " + err.Error()
						}
						time.Sleep(4 * time.Second)
						if _, err := kc(nil, "-n", registryNS, "scale", "deployment", registryService, "--replicas=1"); err != nil {
							return "starting the registry: " + err.Error()
						}
						pod, err := waitNewRegistryPod(old, 2*time.Minute)
						if err != nil {
							return err.Error()
						}
						return fmt.Sprintf("registry pod %s deleted while %s ran; %s was ready %s later", strings.Join(old, ","), task, pod, time.Since(start).Round(100*time.Millisecond))
					}
				}
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	return "task " + task + " never ran: no fault injected"
}

// ---- registry-data-lost: zot's pod lost mid-run, and its emptyDir with it

// registryVolume is zot's data volume as its Deployment declares it
// (the chart: emptyDir, or a claim for storage.type pvc).
func registryVolume() (obj, error) {
	out, err := kc(nil, "-n", registryNS, "get", "deployment", registryService, "-o", `jsonpath={.spec.template.spec.volumes[?(@.name=="data")]}`)
	if err != nil {
		return nil, err
	}
	var v obj
	if err := json.Unmarshal(out, &v); err != nil {
		return nil, fmt.Errorf("zot's data volume: %w (%s)", err, out)
	}
	return v, nil
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

// loseRegistryWhen deletes zot's pod as soon as producer's TaskRun has
// succeeded (its push is done), before its consumer's pull: on the chart's
// default emptyDir the new pod starts empty, so every artifact of the run is
// gone, as when a node drains or zot is evicted. The fault case puts a task
// that only sleeps between them. It returns what it did, once the new pod is
// ready; c.faultFailed says the fault could not be injected. It gives up when
// stop is closed (the run ended).
func (c *kase) loseRegistryWhen(producer string, tasks []*ptask, converted map[string]bool, stop <-chan struct{}) string {
	fail := func(format string, a ...any) string {
		c.faultFailed = true
		return fmt.Sprintf(format, a...)
	}
	vol, err := registryVolume()
	if err != nil {
		return fail("registry pod not deleted: %v", err)
	}
	if vol["emptyDir"] == nil {
		return fail("registry pod not deleted: zot's data is not on an emptyDir (%v), so deleting its pod loses nothing", vol)
	}
	cons := map[string]bool{}
	for _, t := range consumers(producer, tasks, converted) {
		cons[t.name] = true
	}
	for {
		select {
		case <-stop:
			return fail("registry pod not deleted: the run ended before %s succeeded", producer)
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
			return fail("registry pod not deleted: consumer %s already started when %s succeeded (the case needs a slower task between them)", strings.Join(started, ","), producer)
		}
		uid := s(m(trs.Items[0], "metadata", "labels"), "tekton.dev/pipelineRunUID")
		var tags []string
		for w := range converted {
			repo := fmt.Sprintf("%s/%s/%s/%s", repoPrefix, c.ns, uid, transform.RepositoryComponent(w))
			t, err := repoTags(repo)
			if err != nil || len(t) == 0 {
				return fail("registry pod not deleted: %s has no tags (%v): did %s push?", repo, err, producer)
			}
			tags = append(tags, repo+":"+strings.Join(t, ","))
		}
		start := time.Now()
		old := registryPodNames()
		if _, err := kc(nil, "-n", registryNS, "delete", "pod", "-l", registrySelector, "--wait=false"); err != nil {
			return fail("registry pod not deleted: %v", err)
		}
		pod, err := waitNewRegistryPod(old, 2*time.Minute)
		if err != nil {
			return fail("registry pod %s deleted, but: %v", strings.Join(old, ","), err)
		}
		ready := time.Since(start).Round(100 * time.Millisecond)
		after := "gone"
		for w := range converted {
			repo := fmt.Sprintf("%s/%s/%s/%s", repoPrefix, c.ns, uid, transform.RepositoryComponent(w))
			if t, err := repoTags(repo); err == nil && len(t) > 0 {
				after = "still there: " + strings.Join(t, ",")
			}
		}
		sort.Strings(tags)
		return fmt.Sprintf("%s succeeded (pushed %s); zot pod %s deleted before any consumer (%s) started; new pod %s ready %s later, the run's tags %s",
			producer, strings.Join(tags, " "), strings.Join(old, ","), strings.Join(slices.Sorted(maps.Keys(cons)), ","), pod, ready, after)
	}
}

// repoTags lists a repository's tags as its own namespace's runs may
// (<prefix>/<namespace>/...: registry.go); a repository zot does not know
// (404) has no tags, and that is no error.
func repoTags(repo string) ([]string, error) {
	ns, _, _ := strings.Cut(strings.TrimPrefix(repo, repoPrefix+"/"), "/")
	status, body, err := registryGet(ns, repo+"/tags/list")
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusNotFound:
		return nil, nil
	case status != http.StatusOK:
		return nil, fmt.Errorf("tags of %s as namespace %s: HTTP %d: %.200s", repo, ns, status, body)
	}
	var tags struct{ Tags []string }
	if err := json.Unmarshal(body, &tags); err != nil {
		return nil, err
	}
	return tags.Tags, nil
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

// ---- registry-full: zot's volume has no room for a push

// fullProblems checks the outcome the registry-full fault must have, instead
// of equivalence (the PVC run has no registry to fill): the PVC run
// succeeded; in the converted run `full`'s push failed, after its retries,
// naming the registry's answer (zot answers 500 when its disk is full, or
// 400 DIGEST_INVALID when it filled while a blob streamed in) and
// saying that the registry's log has the cause, and
// the run failed; every finally task pulled what the tasks before left, from
// the full registry, whole, and its own steps (which check the data) passed:
// nothing partial or corrupt was pulled.
func fullProblems(pvc, oci *runResult, full string, tasks []*ptask) []string {
	var out []string
	if !strings.HasPrefix(pvc.status, "True") {
		out = append(out, fmt.Sprintf("the PVC run did not succeed: %s", pvc.status))
	}
	if !strings.HasPrefix(oci.status, "False") {
		out = append(out, fmt.Sprintf("the converted run did not fail: %s", oci.status))
	}
	pushFailed := false
	for _, tr := range oci.taskRuns[full] {
		for name, st := range tr.steps {
			if strings.HasPrefix(name, "oci-transport-push-") && st.terminated && st.exitCode == 1 {
				log := tr.logs[name]
				// zot answers 500 when the disk is full at a request, or
				// keeps a blob short and answers its last request 400
				// DIGEST_INVALID when it filled while the blob streamed in
				refused := strings.Contains(log, "500") || strings.Contains(log, "digest invalid")
				if !strings.Contains(log, "push failed") || !refused || !strings.Contains(log, "its own log says why") {
					out = append(out, fmt.Sprintf("%s: step %s exited 1 without saying the registry refused the push (HTTP 500, or 400 DIGEST_INVALID) and where to look: %q", tr.name, name, lastLine(log)))
				}
				pushFailed = true
			}
		}
	}
	if !pushFailed {
		out = append(out, fmt.Sprintf("no oci-transport-push-* step of %s exited 1: the registry did not fill up (%s)", full, statuses(oci.taskRuns[full])))
	}
	finals := 0
	for _, t := range tasks {
		if !t.finally {
			continue
		}
		for _, tr := range oci.taskRuns[t.name] {
			finals++
			for name, st := range tr.steps {
				if st.ran() && st.exitCode != 0 {
					out = append(out, fmt.Sprintf("finally %s: step %s exited %d pulling from the full registry: %q", tr.name, name, st.exitCode, lastLine(tr.logs[name])))
				}
			}
		}
	}
	if finals == 0 {
		out = append(out, "no finally task ran in the converted run: nothing was pulled from the full registry")
	}
	sort.Strings(out)
	return out
}

func lastLine(log string) string {
	log = strings.TrimSpace(log)
	if i := strings.LastIndex(log, "\n"); i >= 0 {
		return log[i+1:]
	}
	return log
}

// ---- registry-evicted: zot's emptyDir over its sizeLimit

// watchEviction watches zot's pods while the converted run runs: once
// producer has succeeded, the kubelet must evict zot for its emptyDir's
// sizeLimit (the chart's zot.storage.emptyDir.sizeLimit, small for this
// case) and a new, empty, pod come up. It returns what happened;
// c.faultFailed says it did not (the outcome then says nothing).
func (c *kase) watchEviction(producer string, stop <-chan struct{}) string {
	var produced time.Time
	evicted := map[string]bool{} // zot pods seen evicted
	var seen []string
	for {
		select {
		case <-stop:
			if len(seen) == 0 {
				c.faultFailed = true
				return "zot was not evicted while the run ran (its emptyDir did not pass its sizeLimit, or the kubelet did not notice in time)"
			}
			return strings.Join(seen, "; ")
		case <-time.After(time.Second):
		}
		if produced.IsZero() {
			var trs struct{ Items []obj }
			if err := kcJSON(&trs, "-n", c.ns, "get", "taskruns", "-l", "tekton.dev/pipelineRun=oci,tekton.dev/pipelineTask="+producer); err == nil {
				for _, tr := range trs.Items {
					for _, cond := range list(m(tr, "status"), "conditions") {
						if s(cond.(obj), "type") == "Succeeded" && s(cond.(obj), "status") == "True" {
							produced = time.Now()
						}
					}
				}
			}
		}
		var pods struct{ Items []obj }
		if err := kcJSON(&pods, "-n", registryNS, "get", "pods", "-l", registrySelector); err != nil {
			continue
		}
		for _, p := range pods.Items {
			name := s(m(p, "metadata"), "name")
			if s(m(p, "status"), "reason") != "Evicted" || evicted[name] {
				continue
			}
			evicted[name] = true
			when := "before " + producer + " succeeded"
			if !produced.IsZero() {
				when = fmt.Sprintf("%s after %s succeeded", time.Since(produced).Round(time.Second), producer)
			}
			msg := fmt.Sprintf("zot pod %s evicted %s: %q", name, when, s(m(p, "status"), "message"))
			if pod, err := waitNewRegistryPod(slices.Collect(maps.Keys(evicted)), 2*time.Minute); err == nil {
				msg += "; new pod " + pod + " ready, empty"
			}
			seen = append(seen, msg)
		}
	}
}

// ---- registry-member-restart: one member of zot's scale-out cluster deleted

// zotCluster is the `cluster` section of the zot config the chart rendered
// (the ConfigMap <fullname>-zot, config.json): the members, in order, and
// the key that spreads repositories over them. Empty members: zot does not
// run as a cluster (zot.replicas 1).
func zotCluster() (members []string, hashKey string, err error) {
	out, err := kc(nil, "-n", registryNS, "get", "configmap", registryService, "-o", `jsonpath={.data.config\.json}`)
	if err != nil {
		return nil, "", err
	}
	var cfg struct {
		Cluster struct {
			Members []string `json:"members"`
			HashKey string   `json:"hashKey"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		return nil, "", fmt.Errorf("zot's config.json: %w", err)
	}
	return cfg.Cluster.Members, cfg.Cluster.HashKey, nil
}

// zotOwner is the member of zot's scale-out cluster that reads and writes
// repo: zot v2.1.20's cluster.ComputeTargetMember, SipHash-2-4 of the
// repository name keyed with the 16 bytes of hashKey, modulo the members.
// Its pod is the first label of the member's address
// (<fullname>-zot-<i>.<fullname>-zot-cluster.<ns>.svc:<port>).
func zotOwner(members []string, hashKey, repo string) (pod string, idx int) {
	idx = int(sipHash24([]byte(hashKey), []byte(repo)) % uint64(len(members)))
	pod, _, _ = strings.Cut(members[idx], ".")
	return pod, idx
}

// sipHash24 is SipHash-2-4 with a 128-bit key, as github.com/dchest/siphash
// (which zot uses) computes it with New(key).Sum64().
func sipHash24(key, msg []byte) uint64 {
	le := func(b []byte) uint64 {
		var v uint64
		for i := len(b) - 1; i >= 0; i-- {
			v = v<<8 | uint64(b[i])
		}
		return v
	}
	rotl := func(x uint64, b uint) uint64 { return x<<b | x>>(64-b) }
	k0, k1 := le(key[:8]), le(key[8:16])
	v0, v1, v2, v3 := k0^0x736f6d6570736575, k1^0x646f72616e646f6d, k0^0x6c7967656e657261, k1^0x7465646279746573
	round := func() {
		v0 += v1
		v1 = rotl(v1, 13) ^ v0
		v0 = rotl(v0, 32)
		v2 += v3
		v3 = rotl(v3, 16) ^ v2
		v0 += v3
		v3 = rotl(v3, 21) ^ v0
		v2 += v1
		v1 = rotl(v1, 17) ^ v2
		v2 = rotl(v2, 32)
	}
	n := len(msg)
	for ; len(msg) >= 8; msg = msg[8:] {
		mi := le(msg[:8])
		v3 ^= mi
		round()
		round()
		v0 ^= mi
	}
	b := uint64(n)<<56 | le(msg)
	v3 ^= b
	round()
	round()
	v0 ^= b
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}

// podUIDReady is the uid of pod name and whether it is Ready ("" if absent).
func podUIDReady(name string) (string, bool) {
	out, err := kc(nil, "-n", registryNS, "get", "pod", name, "-o",
		`jsonpath={.metadata.uid} {.status.conditions[?(@.type=="Ready")].status}`)
	if err != nil {
		return "", false
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		return "", false
	}
	return f[0], len(f) == 2 && f[1] == "True"
}

// restartRegistryMemberWhen deletes one member of zot's scale-out cluster
// (zot.replicas > 1 on S3) as soon as the step `work` of task's TaskRun in
// the converted run starts, as registry-restart does with the single pod:
// the member that owns the run's repository (the one every request for it
// ends at, directly or proxied by the other), so that its push, a second
// later, and the pulls after it meet a member that is terminating, gone or
// starting, and must retry. Deleted as a drain deletes it (graceful); its
// StatefulSet makes a pod of the same name, which rebuilds its metadata
// from the bucket. The run must succeed and be equivalent: nothing is lost,
// since the blobs and manifests are in the bucket. It returns what it did
// and when the member was back; c.faultFailed says the fault could not be
// injected (the caller's outcome then says nothing about it).
func (c *kase) restartRegistryMemberWhen(task string, converted map[string]bool, stop <-chan struct{}) string {
	fail := func(format string, a ...any) string {
		c.faultFailed = true
		return "no member deleted: " + fmt.Sprintf(format, a...)
	}
	members, hashKey, err := zotCluster()
	if err != nil {
		return fail("%v", err)
	}
	if len(members) < 2 || len(hashKey) != 16 {
		return fail("zot is not a scale-out cluster (members %v, hashKey of %d characters): run it with zot.replicas 2 on s3", members, len(hashKey))
	}
	for {
		select {
		case <-stop:
			return fail("the run ended before %s's step %s started", task, stepBefore)
		case <-time.After(300 * time.Millisecond):
		}
		var trs struct{ Items []obj }
		if err := kcJSON(&trs, "-n", c.ns, "get", "taskruns", "-l", "tekton.dev/pipelineRun=oci,tekton.dev/pipelineTask="+task); err != nil {
			continue
		}
		for _, tr := range trs.Items {
			ready := false
			for _, st := range list(m(tr, "status"), "steps") {
				if s(st.(obj), "name") == stepBefore && m(st, "terminated") != nil {
					ready = true
				}
			}
			if !ready {
				continue
			}
			start := time.Now()
			uid := s(m(tr, "metadata", "labels"), "tekton.dev/pipelineRunUID")
			var repos []string
			victim := ""
			for _, w := range slices.Sorted(maps.Keys(converted)) {
				repo := fmt.Sprintf("%s/%s/%s/%s", repoPrefix, c.ns, uid, transform.RepositoryComponent(w))
				pod, idx := zotOwner(members, hashKey, repo)
				repos = append(repos, fmt.Sprintf("%s (owner: member %d, %s)", repo, idx, pod))
				if victim == "" {
					victim = pod // the first workspace's (the fault's case has one)
				}
			}
			if victim == "" {
				return fail("the run has no converted workspace")
			}
			oldUID, _ := podUIDReady(victim)
			if oldUID == "" {
				return fail("member pod %s not found", victim)
			}
			if _, err := kc(nil, "-n", registryNS, "delete", "pod", victim, "--wait=false"); err != nil {
				return fail("deleting %s: %v", victim, err)
			}
			deadline := time.Now().Add(3 * time.Minute)
			gone := time.Duration(0)
			for time.Now().Before(deadline) {
				u, ok := podUIDReady(victim)
				if u != oldUID && gone == 0 {
					gone = time.Since(start)
				}
				if u != "" && u != oldUID && ok {
					return fmt.Sprintf("zot member %s deleted when %s's step `work` started (repositories: %s); the old pod was gone after %s, the new %s ready %s after the delete",
						victim, task, strings.Join(repos, ", "), gone.Round(100*time.Millisecond), victim, time.Since(start).Round(100*time.Millisecond))
				}
				time.Sleep(200 * time.Millisecond)
			}
			c.faultFailed = true
			return fmt.Sprintf("zot member %s deleted when %s's step `work` started (repositories: %s), but no new %s was ready within 3 minutes", victim, task, strings.Join(repos, ", "), victim)
		}
	}
}
