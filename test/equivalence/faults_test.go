package main

import (
	"strings"
	"testing"
)

// The fault case's pipeline: produce -> wait (no workspace) -> consume.
func dataLostCase() ([]*ptask, map[string]bool) {
	return []*ptask{
		{name: "produce", bindings: []binding{{taskWS: "ws", pipelineWS: "ws"}}},
		{name: "wait", deps: []string{"produce"}},
		{name: "consume", deps: []string{"wait"}, bindings: []binding{{taskWS: "ws", pipelineWS: "ws"}}},
	}, map[string]bool{"ws": true}
}

func dataLostRuns(pull stepState, pullLog string, own stepState) (pvc, oci *runResult) {
	ok := stepState{terminated: true, reason: "Completed"}
	pvc = &runResult{kind: "pvc", status: "True/Succeeded"}
	oci = &runResult{kind: "oci", status: "False/Failed", taskRuns: map[string][]*taskRun{
		"produce": {{name: "oci-produce", status: "True/Succeeded", steps: map[string]stepState{"s": ok}}},
		"wait":    {{name: "oci-wait", status: "True/Succeeded", steps: map[string]stepState{"s": ok}}},
		"consume": {{name: "oci-consume", status: "False/Failed",
			steps: map[string]stepState{"oci-transport-pull-ws": pull, stepBefore: {terminated: true, exitCode: 1, reason: "Skipped"}, "s": own},
			logs:  map[string]string{"oci-transport-pull-ws": pullLog}}},
	}}
	return pvc, oci
}

func TestDataLostOutcome(t *testing.T) {
	tasks, converted := dataLostCase()
	if c := consumers("produce", tasks, converted); len(c) != 1 || c[0].name != "consume" {
		t.Fatalf("consumers = %v", c)
	}
	skipped := stepState{terminated: true, exitCode: 1, reason: "Skipped"}
	loud := stepState{terminated: true, exitCode: 4, reason: "Error"}
	missingLog := `level=ERROR msg="pull: tag produce of a producer that ran is missing"`

	pvc, oci := dataLostRuns(loud, missingLog, skipped)
	if p := dataLostProblems(pvc, oci, "produce", tasks, converted); len(p) != 0 {
		t.Fatalf("the right outcome was refused: %q", p)
	}
	// a silent pull: exit 0, the consumer's steps ran on an empty workspace
	pvc, oci = dataLostRuns(stepState{terminated: true, reason: "Completed"}, "pull: no artifact", stepState{terminated: true, exitCode: 1, reason: "Error"})
	oci.status = "True/Succeeded"
	got := strings.Join(dataLostProblems(pvc, oci, "produce", tasks, converted), "\n")
	for _, want := range []string{"the converted run did not fail", "step s ran", "no oci-transport-pull-* step exited 4"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
	// exit 1 (a generic failure) is not the loud, named failure
	pvc, oci = dataLostRuns(stepState{terminated: true, exitCode: 1, reason: "Error"}, missingLog, skipped)
	if p := dataLostProblems(pvc, oci, "produce", tasks, converted); len(p) != 1 || !strings.Contains(p[0], "exit 1") {
		t.Fatalf("problems = %q", p)
	}
	// the consumer never ran: the fault was not exercised
	pvc, oci = dataLostRuns(loud, missingLog, skipped)
	delete(oci.taskRuns, "consume")
	if p := dataLostProblems(pvc, oci, "produce", tasks, converted); len(p) != 1 || !strings.Contains(p[0], "not exercised") {
		t.Fatalf("problems = %q", p)
	}
}

func TestRegistryFullOutcome(t *testing.T) {
	tasks := []*ptask{
		{name: "produce", bindings: []binding{{taskWS: "ws", pipelineWS: "ws"}}},
		{name: "grow", deps: []string{"produce"}, bindings: []binding{{taskWS: "ws", pipelineWS: "ws"}}},
		{name: "inspect", finally: true, bindings: []binding{{taskWS: "ws", pipelineWS: "ws"}}},
	}
	ok := stepState{terminated: true, reason: "Completed"}
	failedPush := `level=WARN msg=retrying op="push blob sha256:2c" attempt=6 in=9.092s err="PUT ...: response status code 500: Internal Server Error"
level=ERROR msg="push failed" exit=1 err="push blob sha256:2c (after 7 attempts): PUT ...: response status code 500: Internal Server Error; the registry failed every attempt: its own log says why (zot answers a bare 500 when its storage is full)"`
	runs := func(pushExit int, pushLog string, inspect stepState) (pvc, oci *runResult) {
		pvc = &runResult{kind: "pvc", status: "True/Succeeded"}
		oci = &runResult{kind: "oci", status: "False/Failed", taskRuns: map[string][]*taskRun{
			"produce": {{name: "oci-produce", status: "True/Succeeded", steps: map[string]stepState{"s": ok, "oci-transport-push-ws": ok}}},
			"grow": {{name: "oci-grow", status: "False/Failed",
				steps: map[string]stepState{"s": ok, "oci-transport-push-ws": {terminated: true, exitCode: pushExit, reason: "Error"}},
				logs:  map[string]string{"oci-transport-push-ws": pushLog}}},
			"inspect": {{name: "oci-inspect", status: "True/Succeeded", steps: map[string]stepState{"oci-transport-pull-ws": ok, "s": inspect}}},
		}}
		return pvc, oci
	}
	pvc, oci := runs(1, failedPush, ok)
	if p := fullProblems(pvc, oci, "grow", tasks); len(p) != 0 {
		t.Fatalf("the right outcome was refused: %q", p)
	}
	// zot filled while the blob streamed in: 400 DIGEST_INVALID, with the hint
	digestInvalid := `level=ERROR msg="push failed" exit=1 err="push blob sha256:b2: PUT ...: response status code 400: digest invalid: provided digest did not match uploaded content; the registry kept other bytes than this step sent (the digest is of what was sent): its storage may be full or failing, its own log says why"`
	pvc, oci = runs(1, digestInvalid, ok)
	if p := fullProblems(pvc, oci, "grow", tasks); len(p) != 0 {
		t.Fatalf("a DIGEST_INVALID refusal with the hint was refused: %q", p)
	}
	// the same answer without saying where to look
	pvc, oci = runs(1, strings.Split(digestInvalid, "; the registry kept")[0]+`"`, ok)
	if p := fullProblems(pvc, oci, "grow", tasks); len(p) != 1 {
		t.Fatalf("problems = %q", p)
	}
	// a push that failed without naming the registry's answer
	pvc, oci = runs(1, `level=ERROR msg="push failed" exit=1 err="scan: permission denied"`, ok)
	if p := fullProblems(pvc, oci, "grow", tasks); len(p) != 1 || !strings.Contains(p[0], "HTTP 500") {
		t.Fatalf("problems = %q", p)
	}
	// the finally task pulled something its check refused: corrupt data
	pvc, oci = runs(1, failedPush, stepState{terminated: true, exitCode: 1, reason: "Error"})
	if p := fullProblems(pvc, oci, "grow", tasks); len(p) != 1 || !strings.Contains(p[0], "finally oci-inspect") {
		t.Fatalf("problems = %q", p)
	}
	// the registry never filled up: every push worked
	pvc, oci = runs(0, "", ok)
	oci.status = "True/Succeeded"
	got := strings.Join(fullProblems(pvc, oci, "grow", tasks), "\n")
	for _, want := range []string{"the converted run did not fail", "did not fill up"} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
}

func TestFailedObservers(t *testing.T) {
	rr := &runResult{kind: "pvc", taskRuns: map[string][]*taskRun{
		"a": {{name: "pvc-a", steps: map[string]stepState{stepBefore: {terminated: true, exitCode: 1, reason: "Error"}}}},
		"b": {{name: "pvc-b", steps: map[string]stepState{stepAfter: {terminated: true, exitCode: 1, reason: "Skipped"}}}},
	}}
	if got := failedObservers(rr); len(got) != 1 || !strings.Contains(got[0], "pvc-a") {
		t.Fatalf("failed observers = %q", got)
	}
}
