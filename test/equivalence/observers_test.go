package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
)

// The harness must judge the user's pipeline: with its observer steps (and
// stand-ins) added, the webhook must give the injected steps the
// securityContext it gives them without the harness. Checked on every corpus
// case with inline task specs, and on tasks whose steps run as several users.
func TestObserversKeepTheInjectedStepsUser(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	files = append(files, "testdata/mixed-users.txt") // below
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), filepath.Ext(f)), func(t *testing.T) {
			var run obj
			if strings.HasSuffix(f, ".txt") {
				run = mixedUsersRun()
			} else {
				docs, err := readDocs([]string{f})
				require.NoError(t, err)
				for _, d := range docs {
					if s(d, "kind") == "PipelineRun" {
						run = d
					}
				}
			}
			pspec := m(run, "spec", "pipelineSpec")
			if pspec == nil {
				t.Skip("a pipelineRef: its tasks are checked where they are inline")
			}
			plain := injectedContexts(t, run)
			observed := clone(run)
			for _, pt := range append(list(m(observed, "spec", "pipelineSpec"), "tasks"), list(m(observed, "spec", "pipelineSpec"), "finally")...) {
				if ts := m(pt, "taskSpec"); ts != nil {
					observe(ts)
				}
			}
			require.Equal(t, plain, injectedContexts(t, observed))
		})
	}
}

// mixedUsersRun has tasks whose first, last and root steps differ, with and
// without a stepTemplate.
func mixedUsersRun() obj {
	step := func(name string, sc obj) obj {
		st := obj{"name": name, "image": "busybox", "script": "true"}
		if sc != nil {
			st["securityContext"] = sc
		}
		return st
	}
	root, user := obj{"runAsUser": float64(0)}, obj{"runAsUser": float64(1000)}
	task := func(name string, tmpl obj, steps ...any) obj {
		ts := obj{"workspaces": []any{obj{"name": "src"}}, "steps": steps}
		if tmpl != nil {
			ts["stepTemplate"] = obj{"securityContext": tmpl}
		}
		return obj{"name": name, "workspaces": []any{obj{"name": "src", "workspace": "ws"}}, "taskSpec": ts}
	}
	tasks := []any{
		task("root-then-user", nil, step("a", root), step("b", user)),
		task("user-then-root", nil, step("a", user), step("b", root)),
		task("user-root-user", nil, step("a", user), step("b", root), step("c", obj{"runAsUser": float64(2000)})),
		task("users-only", nil, step("a", user), step("b", obj{"runAsUser": float64(2000)})),
		task("template-user-one-root", user, step("a", nil), step("b", root), step("c", nil)),
		task("image-user-then-user", nil, step("a", nil), step("b", user)),
	}
	// a chain: every task pulls what the one before pushed
	for i := 1; i < len(tasks); i++ {
		tasks[i].(obj)["runAfter"] = []any{s(tasks[i-1].(obj), "name")}
	}
	return obj{"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": obj{"name": "r", "namespace": "ns"},
		"spec": obj{
			"workspaces":   []any{obj{"name": "ws", "volumeClaimTemplate": obj{"spec": obj{"accessModes": []any{"ReadWriteOnce"}, "resources": obj{"requests": obj{"storage": "1Gi"}}}}}},
			"pipelineSpec": obj{"workspaces": []any{obj{"name": "ws"}}, "tasks": append(tasks, task("last", nil, step("a", nil)))},
		}}
}

func clone(o obj) obj {
	b, _ := json.Marshal(o)
	var c obj
	_ = json.Unmarshal(b, &c)
	return c
}

// injectedContexts converts run and returns, per task, the securityContext
// of each step the webhook injected.
func injectedContexts(t *testing.T, run obj) map[string]string {
	t.Helper()
	b, err := json.Marshal(run)
	require.NoError(t, err)
	var pr v1.PipelineRun
	require.NoError(t, json.Unmarshal(b, &pr))
	out, report, err := transform.PipelineRun(&pr, transform.Resolved{}, transform.Options{
		Registry: "zot:5000", RepositoryPrefix: "p", PlainHTTP: true, StepImage: "step", StepCommand: []string{"/step"},
	})
	require.NoError(t, err)
	if report.Outcome != transform.Converted {
		t.Skipf("not converted: %s %s", report.Reason, report.Message)
	}
	got := map[string]string{}
	for _, pt := range append(out.Spec.PipelineSpec.Tasks, out.Spec.PipelineSpec.Finally...) {
		if pt.TaskSpec == nil {
			continue
		}
		for _, st := range pt.TaskSpec.Steps {
			if strings.HasPrefix(st.Name, transform.ReservedPrefix) {
				sc, _ := json.Marshal(st.SecurityContext)
				got[pt.Name+"/"+st.Name] = string(sc)
			}
		}
	}
	require.NotEmpty(t, got, "no step injected: the comparison would prove nothing")
	return got
}
