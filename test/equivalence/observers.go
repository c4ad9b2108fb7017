package main

// The observer steps the harness adds to every task, the PVC lock that serializes the PVC run, and the stand-ins that keep the injected steps' user.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// observer is a step that prints every declared workspace's tree. pipefail:
// a find or stat that fails (a path too long, a vanished entry) fails the
// step, so a view is never silently short (compare reports a failed observer).
//
// In the PVC run it also serializes the task on the workspaces' PVCs
// without changing the DAG: each task workspace X has an optional twin
// eq-lock-X, which only the PVC run binds (the PVC's root, whatever X's
// subPath). The before-observer takes the lock of each PVC (in claim-name
// order, once per claim) before printing, and prints its turn (EQ-LOCK X n,
// a counter kept under the lock); the after-observer prints, then gives the
// locks back. Unbound (the converted run), nothing of it runs. The lock is
// a symlink, created atomically with its holder's identity (TaskRun/pod);
// a holder whose steps failed never reaches its after-observer: the harness
// frees its lock once its TaskRun has ended (releaseDeadLocks), and a retry
// of the same TaskRun takes over the lock of its dead earlier attempt.
// Views never show the bookkeeping directory lockDir.
func observer(name string, workspaces []string) obj {
	var b strings.Builder
	b.WriteString("#!/bin/sh\nset -e -o pipefail\n")
	// the locks: "claim taskWS dir" lines, sorted (the same order in every pod)
	b.WriteString("eq_locks() {\n:\n")
	for _, w := range workspaces {
		l := lockWorkspace(w)
		fmt.Fprintf(&b, "if [ \"$(workspaces.%[1]s.bound)\" = true ]; then echo \"$(workspaces.%[1]s.claim) %[2]s $(workspaces.%[1]s.path)\"; fi\n", l, w)
	}
	b.WriteString("}\neq_me=\"$(context.taskRun.name)/$(hostname)\"\n")
	if name == stepBefore {
		fmt.Fprintf(&b, `eq_locks | sort | while read -r claim tws dir; do
  if [ "$claim" != "${prev:-}" ]; then
    prev=$claim; d="$dir/%[1]s"
    mkdir -p -m 777 "$d"
    until ln -sn "$eq_me" "$d/lock" 2>/dev/null; do
      h=$(readlink "$d/lock") || continue
      case "$h" in "$(context.taskRun.name)/"*) rm -f "$d/lock"; echo "EQ-LOCK-TAKEOVER $tws $h";; esac
      sleep 0.2
    done
    n=$(cat "$d/seq" 2>/dev/null || echo 0); n=$((n + 1))
    echo "$n" > "$d/seq.$$" && mv -f "$d/seq.$$" "$d/seq"
  fi
  echo "EQ-LOCK $tws $n"
done
`, lockDir)
	}
	for _, w := range workspaces {
		fmt.Fprintf(&b, "echo 'EQ-VIEW %s'\n", w)
		fmt.Fprintf(&b, "cd \"$(workspaces.%s.path)\"\n", w)
		// An observer runs as the step next to it does (observeWorkspaces):
		// what that user cannot read is printed as such ("noread"), the same
		// in both runs; find's only tolerated complaint is about those.
		fmt.Fprintf(&b, `find . -mindepth 1 -path ./%[2]s -prune -o -print 2>/dev/null | sort | while IFS= read -r p; do
  o=$(stat -c %%u:%%g "$p"); md=$(stat -c %%a "$p")
  if [ -L "$p" ]; then echo "EQ|%[1]s|$p|symlink|777|$o|0|-|$(readlink "$p")"
  elif [ -d "$p" ]; then if [ -r "$p" ] && [ -x "$p" ]; then r=-; else r=noread; fi; echo "EQ|%[1]s|$p|dir|$md|$o|0|$r|"
  elif [ -f "$p" ]; then if [ -r "$p" ]; then r=$(sha256sum < "$p" | cut -d' ' -f1); else r=noread; fi; echo "EQ|%[1]s|$p|file|$md|$o|$(stat -c %%s "$p")|$r|"
  else echo "EQ|%[1]s|$p|other|$md|$o|0|-|"; fi
done
if eq_err=$(find . -mindepth 1 -path ./%[2]s -prune -o -print 2>&1 >/dev/null); then :; fi
eq_bad=$(printf '%%s\n' "$eq_err" | grep -v ': Permission denied$' | grep . || true)
if [ -n "$eq_bad" ]; then echo "$eq_bad" >&2; exit 1; fi
`, w, lockDir)
	}
	if name == stepAfter {
		fmt.Fprintf(&b, `eq_locks | sort | while read -r claim tws dir; do
  [ "$claim" = "${prev:-}" ] && continue
  prev=$claim; d="$dir/%[1]s"
  h=$(readlink "$d/lock" 2>/dev/null || true)
  if [ "$h" != "$eq_me" ]; then echo "EQ-LOCK-LOST $tws: held by '$h', not $eq_me" >&2; exit 1; fi
  rm "$d/lock"
done
`, lockDir)
	}
	return obj{"name": name, "image": observerImage, "script": b.String()}
}

// lockDir is the PVC run's bookkeeping directory at the root of each PVC:
// lock (a symlink to its holder) and seq (the last turn given).
const lockDir = ".eq-pvc"

// lockWorkspace is the name of the optional task workspace that the PVC run
// binds to the root of w's PVC, for the lock.
func lockWorkspace(w string) string { return "eq-lock-" + w }

// observe adds the two observer steps to a Task spec, for the workspaces it
// declares.
func observe(spec obj) {
	var ws []string
	for _, w := range list(spec, "workspaces") {
		ws = append(ws, s(w.(obj), "name"))
	}
	observeWorkspaces(spec, ws)
}

// observeWorkspaces adds the two observer steps for the task workspaces ws
// (an embedded spec's pod may have more than it declares: podWorkspaces),
// and declares their optional lock workspaces.
func observeWorkspaces(spec obj, ws []string) {
	if len(ws) == 0 {
		return
	}
	decl := list(spec, "workspaces")
	for _, w := range ws {
		decl = append(decl, obj{"name": lockWorkspace(w), "optional": true})
	}
	spec["workspaces"] = decl
	user := list(spec, "steps")
	before, after := observer(stepBefore, ws), observer(stepAfter, ws)
	steps := []any{before}
	steps = append(steps, user...)
	steps = append(steps, after)
	if len(user) > 0 {
		first, last := user[0].(obj), user[len(user)-1].(obj)
		strongest := mostPrivileged(user, m(spec, "stepTemplate"))
		runAs(before, strongest)
		runAs(after, strongest)
		if !sameContext(strongest, first) {
			steps = append([]any{standIn(stepHead, first)}, steps...)
		}
		if !sameContext(strongest, last) {
			steps = append(steps, standIn(stepTail, last))
		}
	}
	spec["steps"] = steps
}

// The observers read the views as the task's most privileged step runs (a
// view is complete when a task's steps run as several users: root made a
// 0700 directory, a non-root step built next to it). The webhook chooses
// the injected steps' user from the task's first and last steps and from
// whether any step runs as root (design.md, "Users and groups"), so when
// the observers' user is not the first or last step's, a stand-in step with
// that step's securityContext comes first or last: the first and last
// steps, and the set of contexts the steps run with, are the user's, and the
// webhook decides as it would without the harness. (Root observers used to
// decide for it: on the test bed the injected steps ran as root whatever
// the task.) Under Pod Security "restricted" every step runs as one user, no
// stand-in is needed, and the observers pass admission as the steps do.
const (
	stepHead = "eq-first-step-user"
	stepTail = "eq-last-step-user"
)

// mostPrivileged is the first step that runs as root (runAsUser 0, its own
// or the stepTemplate's), else the first whose user is the image's (no
// runAsUser: the observer image's is root), else the last step.
func mostPrivileged(steps []any, stepTemplate obj) obj {
	uid := func(st obj) (int64, bool) {
		for _, sc := range []obj{m(st, "securityContext"), m(stepTemplate, "securityContext")} {
			if v, ok := sc["runAsUser"].(float64); ok {
				return int64(v), true
			}
		}
		return 0, false
	}
	var unset obj
	for _, st := range steps {
		u, set := uid(st.(obj))
		if set && u == 0 {
			return st.(obj)
		}
		if !set && unset == nil {
			unset = st.(obj)
		}
	}
	if unset != nil {
		return unset
	}
	return steps[len(steps)-1].(obj)
}

func sameContext(a, b obj) bool {
	x, _ := json.Marshal(a["securityContext"])
	y, _ := json.Marshal(b["securityContext"])
	return bytes.Equal(x, y)
}

// standIn is a step that does nothing, as the user's step does.
func standIn(name string, as obj) obj {
	st := obj{"name": name, "image": observerImage, "script": "#!/bin/sh\ntrue\n"}
	runAs(st, as)
	return st
}

// runAs gives a harness step the securityContext of a user's step (none
// when the step has none: the Task's stepTemplate then applies to both
// alike).
func runAs(o, step obj) {
	sc, ok := step["securityContext"].(obj)
	if !ok {
		return
	}
	b, _ := json.Marshal(sc)
	var cp obj
	_ = json.Unmarshal(b, &cp)
	o["securityContext"] = cp
}

// lockBindings binds, in the PVC run's twin of a pipeline spec, each task's
// lock workspaces to the root of the converted workspaces it binds (tasks and
// finally tasks; a matrix task's instances each take the lock). Nothing else
// changes: the DAG, and so Tekton's skip semantics, stay the user's.
func lockBindings(ps obj, tasks []*ptask, converted map[string]bool) obj {
	b, _ := json.Marshal(ps)
	var cp obj
	_ = json.Unmarshal(b, &cp)
	byName := map[string]*ptask{}
	for _, t := range tasks {
		byName[t.name] = t
	}
	for _, sect := range []string{"tasks", "finally"} {
		for _, t := range list(cp, sect) {
			t := t.(obj)
			pt := byName[s(t, "name")]
			if pt == nil {
				continue
			}
			ws := list(t, "workspaces")
			seen := map[string]bool{}
			for _, bd := range pt.bindings {
				if converted[bd.pipelineWS] && !seen[bd.taskWS] {
					seen[bd.taskWS] = true
					ws = append(ws, obj{"name": lockWorkspace(bd.taskWS), "workspace": bd.pipelineWS})
				}
			}
			if len(ws) > 0 {
				t["workspaces"] = ws
			}
		}
	}
	return cp
}
