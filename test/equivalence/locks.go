package main

// The PVC run's locks (observer): a holder whose steps failed, timed out or
// were cancelled never reaches its after-observer, so the harness gives its
// lock back once Tekton says its TaskRun has ended. This is deterministic
// (an ended TaskRun's steps write nothing more; no timeout guesses whether a
// holder is alive), needs nothing in the user's task (no wrapped step, no
// onError, no extra container), and works for every way a pod can end. A
// retry of the same TaskRun takes over the lock of its earlier attempt
// itself (observer): the TaskRun has not ended then.

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// releaseDeadLocks frees every lock of the PVC run (uid) held by a TaskRun
// that has ended. The test bed's claims are hostPath (or local, storage.go)
// volumes on this machine (test/cluster/up.sh), as the registry's are for
// faults.go.
func (c *kase) releaseDeadLocks(uid string) {
	var trs struct{ Items []obj }
	if err := kcJSON(&trs, "-n", c.ns, "get", "taskruns", "-l", "tekton.dev/pipelineRun=pvc"); err != nil {
		return
	}
	ended := map[string]string{}
	for _, tr := range trs.Items {
		for _, cond := range list(m(tr, "status"), "conditions") {
			if s(cond.(obj), "type") == "Succeeded" && s(cond.(obj), "status") != "Unknown" {
				ended[s(m(tr, "metadata"), "name")] = s(cond.(obj), "status") + "/" + s(cond.(obj), "reason")
			}
		}
	}
	if len(ended) == 0 {
		return
	}
	for _, claim := range slices.Sorted(maps.Keys(c.claimsOf(uid))) {
		dir := c.lockRoots[claim]
		if dir == "" {
			continue
		}
		l := filepath.Join(dir, lockDir, "lock")
		holder, err := os.Readlink(l)
		if err != nil {
			continue
		}
		tr, _, _ := strings.Cut(holder, "/")
		st, ok := ended[tr]
		if !ok {
			continue
		}
		// nobody else can change an existing link: waiters only create one,
		// and only the holder's own TaskRun (ended) removes it
		if err := os.Remove(l); err != nil {
			fmt.Printf("  lock: cannot free the lock of %s on claim %s: %v\n", holder, claim, err)
			continue
		}
		fmt.Printf("  lock: freed the lock of %s on claim %s: its TaskRun ended %s before its after-observer\n", holder, claim, st)
	}
}

// claimsOf finds the claims of run uid and where each PV is on this machine
// (c.lockRoots, "" for one that is not a hostPath here: its dead locks
// cannot be freed, which is said once).
func (c *kase) claimsOf(uid string) map[string]bool {
	if c.lockRoots == nil {
		c.lockRoots = map[string]string{}
	}
	var pvcs struct{ Items []obj }
	if err := kcJSON(&pvcs, "-n", c.ns, "get", "pvc"); err != nil {
		return nil
	}
	out := map[string]bool{}
	for _, p := range pvcs.Items {
		owned := false
		for _, ref := range list(m(p, "metadata"), "ownerReferences") {
			owned = owned || s(ref.(obj), "uid") == uid
		}
		name, vol := s(m(p, "metadata"), "name"), s(m(p, "spec"), "volumeName")
		if !owned || vol == "" {
			continue
		}
		out[name] = true
		if _, known := c.lockRoots[name]; known {
			continue
		}
		hp, err := kc(nil, "get", "pv", vol, "-o", "jsonpath={.spec.hostPath.path}{.spec.local.path}")
		dir := strings.TrimSpace(string(hp))
		if err == nil && dir != "" {
			if _, err := os.Stat(dir); err != nil {
				dir = ""
			}
		}
		if dir == "" {
			fmt.Printf("  lock: claim %s (volume %s) is not a hostPath on this machine: a lock its holder leaves behind (a failed task) cannot be freed\n", name, vol)
		}
		c.lockRoots[name] = dir
	}
	return out
}
