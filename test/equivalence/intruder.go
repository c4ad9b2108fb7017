package main

// The cross-namespace fault: after the converted run, a pod in another
// namespace runs the injected steps' own pull and push, with its own
// ServiceAccount's projected token of the registry's audience, against the
// run's repository. Tenant isolation (docs/security.md) says the token
// service grants it nothing there: both must fail, with the step's message
// naming the refusal, and the run's tags must stay as they were. The same
// pod in the run's own namespace must pull: without that control, a pod that
// fails for any other reason (a wrong image, a bad argument) would pass.

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
)

// injectedStep is an injected step of the converted run, as the webhook wrote it.
type injectedStep struct {
	Image           string   `json:"image"`
	Command         []string `json:"command"`
	Args            []string `json:"args"`
	SecurityContext obj      `json:"securityContext,omitempty"`
}

// injectedSteps finds a task of the converted run with both a pull and a push
// step for workspace component, and the projected token volume they mount.
func injectedSteps(run obj, component string) (pull, push injectedStep, token obj, err error) {
	for _, sect := range []string{"tasks", "finally"} {
		for _, t := range list(m(run, "spec", "pipelineSpec"), sect) {
			ts := m(t, "taskSpec")
			var havePull, havePush bool
			for _, st := range list(ts, "steps") {
				b, _ := json.Marshal(st)
				switch s(st.(obj), "name") {
				case "oci-transport-pull-" + component:
					havePull = json.Unmarshal(b, &pull) == nil
				case "oci-transport-push-" + component:
					havePush = json.Unmarshal(b, &push) == nil
				}
			}
			for _, v := range list(ts, "volumes") {
				if s(v.(obj), "name") == "oci-transport-registry-token" {
					token = v.(obj)
				}
			}
			if havePull && havePush && token != nil {
				return pull, push, token, nil
			}
			token = nil
		}
	}
	return pull, push, nil, fmt.Errorf("no task of the converted run has both injected steps for %s and the registry token volume", component)
}

// asIntruder rewrites an injected step's arguments for a pod of its own:
// the run's repository (with its workspace component) instead of the
// task's parameter, a scratch tree and
// state, and for a push the tag tag.
func asIntruder(st injectedStep, repo, tag string) []string {
	args := slices.Clone(st.Args)
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--repository": // $(params.oci-transport-repository)/<component>
			args[i+1] = repo
		case "--mount":
			args[i+1] = "/tree"
		case "--state":
			args[i+1] = "/state/" + args[0] // pull or push: their own
		case "--tag":
			args[i+1] = tag
		}
	}
	return args
}

// podResult is how one container of a probe pod ended.
type podResult struct {
	exit int
	log  string
}

// probePod runs the pull container, and with push also the push container
// (tag "intruder"), in namespace ns and returns how each ended.
func probePod(ns, name string, pull, push injectedStep, token obj, repo string, withPush bool) (map[string]podResult, error) {
	container := func(cname string, st injectedStep, tag string) obj {
		return obj{
			"name": cname, "image": st.Image, "command": st.Command, "args": asIntruder(st, repo, tag),
			"volumeMounts": []obj{
				{"name": "tree", "mountPath": "/tree"},
				{"name": "state", "mountPath": "/state"},
				{"name": "oci-transport-registry-token", "mountPath": "/oci-transport/registry-token", "readOnly": true},
			},
		}
	}
	containers := []obj{container("pull", pull, "")}
	if withPush {
		containers = append(containers, container("push", push, "intruder"))
	}
	pod := obj{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": obj{"name": name, "namespace": ns},
		"spec": obj{
			"restartPolicy": "Never",
			"containers":    containers,
			"volumes":       []obj{{"name": "tree", "emptyDir": obj{}}, {"name": "state", "emptyDir": obj{}}, token},
		},
	}
	b, _ := json.Marshal(pod)
	if _, err := kc(b, "apply", "-f", "-"); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var p obj
		if err := kcJSON(&p, "-n", ns, "get", "pod", name); err != nil {
			return nil, err
		}
		phase := s(m(p, "status"), "phase")
		if phase == "Succeeded" || phase == "Failed" {
			out := map[string]podResult{}
			for _, cs := range list(m(p, "status"), "containerStatuses") {
				cname := s(cs.(obj), "name")
				code, _ := m(cs, "state", "terminated")["exitCode"].(float64)
				log, _ := kc(nil, "-n", ns, "logs", name, "-c", cname)
				out[cname] = podResult{exit: int(code), log: strings.TrimSpace(string(log))}
			}
			return out, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("pod %s/%s still %s after 3m: %v", ns, name, phase, list(m(p, "status"), "containerStatuses"))
		}
		time.Sleep(time.Second)
	}
}

// crossNamespaceProblems runs the probe in the run's namespace (it must
// pull) and in another namespace (pull and push must be refused), and checks
// the run's tags did not change.
func (c *kase) crossNamespaceProblems(oci *runResult, repo, component string, before []string) []string {
	var problems []string
	pull, push, token, err := injectedSteps(oci.obj, component)
	if err != nil {
		return []string{err.Error()}
	}
	other := c.ns + "-intruder"
	if _, err := kc(nil, "create", "namespace", other); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		return []string{err.Error()}
	}
	defer kc(nil, "delete", "namespace", other, "--wait=false") //nolint:errcheck // the test bed goes anyway
	type probe struct {
		ns   string
		res  map[string]podResult
		err  error
		done chan struct{}
	}
	// the control pulls only: its push would succeed and add a tag
	probes := []*probe{{ns: c.ns}, {ns: other}}
	for i, p := range probes {
		p.done = make(chan struct{})
		go func() {
			defer close(p.done)
			p.res, p.err = probePod(p.ns, "eq-probe", pull, push, token, repo, i == 1)
		}()
	}
	for _, p := range probes {
		<-p.done
		if p.err != nil {
			return []string{p.err.Error()}
		}
	}
	own, intruder := probes[0].res, probes[1].res
	fmt.Printf("  cross-namespace: a pod in the run's namespace %s pulls %s: exit %d: %s\n", c.ns, repo, own["pull"].exit, lastLine(own["pull"].log))
	if own["pull"].exit != 0 {
		problems = append(problems, fmt.Sprintf("the control pod in the run's own namespace could not pull (exit %d): %s", own["pull"].exit, lastLine(own["pull"].log)))
	}
	for _, cname := range []string{"pull", "push"} {
		r := intruder[cname]
		fmt.Printf("  cross-namespace: a pod in namespace %s (its own ServiceAccount token) tries to %s the run's repository: exit %d: %s\n", other, cname, r.exit, refusal(lastLine(r.log)))
		switch {
		case r.exit == 0:
			problems = append(problems, fmt.Sprintf("a pod in namespace %s could %s the run's repository %s", other, cname, repo))
		case !strings.Contains(r.log, "refused access") && !strings.Contains(r.log, "denied"):
			problems = append(problems, fmt.Sprintf("the %s from namespace %s failed without naming the refusal: %s", cname, other, lastLine(r.log)))
		}
	}
	after, err := repoTags(repo)
	if err != nil {
		return append(problems, err.Error())
	}
	if !slices.Equal(before, after) {
		problems = append(problems, fmt.Sprintf("the run's tags changed after the other namespace's attempts: [%s] -> [%s]", strings.Join(before, " "), strings.Join(after, " ")))
	}
	return problems
}

// probeRun runs the cross-namespace probe against a converted run that
// exists (NAMESPACE/NAME), for the demo: 0 refused, 1 not, 2 an error.
func probeRun(ref string) int {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok {
		fmt.Fprintln(os.Stderr, "-probe-other-namespace wants NAMESPACE/NAME, not", ref)
		return 2
	}
	var run obj
	if err := kcJSON(&run, "-n", ns, "get", "pipelinerun", name); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ws, _, _ := strings.Cut(s(m(run, "metadata", "annotations"), convertedAnno), ",")
	if ws == "" {
		fmt.Fprintf(os.Stderr, "%s was not converted (no %s annotation)\n", ref, convertedAnno)
		return 2
	}
	component := transform.RepositoryComponent(ws)
	repo := fmt.Sprintf("%s/%s/%s/%s", repoPrefix, ns, s(m(run, "metadata"), "uid"), component)
	before, err := repoTags(repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	c := &kase{name: name, ns: ns}
	problems := c.crossNamespaceProblems(&runResult{obj: run}, repo, component, before)
	for _, p := range problems {
		fmt.Println("  PROBLEM", p)
	}
	if len(problems) > 0 {
		return 1
	}
	fmt.Printf("  tags of %s unchanged: [%s]\n", repo, strings.Join(before, " "))
	return 0
}

// refusal shortens a step's error line to the refusal it names (the
// registry's or the token service's), for a line a reader can take in.
func refusal(line string) string {
	for _, key := range []string{"the registry refused access", "denied"} {
		if i := strings.Index(line, key); i >= 0 {
			line = line[i:]
			if len(line) > 160 {
				line = line[:160] + "..."
			}
			return line
		}
	}
	return line
}
