package transport

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one view of the pipeline workspace in the task: the directory the
// task sees and the slash-separated subPath of that view ("" = the root).
type Mount struct {
	Dir     string
	SubPath string
}

type mount struct {
	Mount
	// view is the part of the workspace this mount shows: the subPath with
	// the symlinks of the workspace resolved, as the kubelet resolves a
	// subPath on a PVC (`current -> releases/v1` makes subPath `current`
	// show `releases/v1`). Every path the transport stores is relative to
	// the workspace root, so this, not SubPath, maps paths to the mount.
	view    string
	abs     string
	covered bool // the same storage is reachable through another mount
}

// local maps a workspace path to a path inside the mount; ok is false when
// the path is outside this view. "" is the mount root.
func (m *mount) local(p string) (string, bool) {
	if m.view == "" {
		return p, true
	}
	if p == m.view {
		return "", true
	}
	if len(p) > len(m.view) && p[len(m.view)] == '/' && p[:len(m.view)] == m.view {
		return p[len(m.view)+1:], true
	}
	return "", false
}

// prepareMounts validates mounts, creates missing mount directories, and
// marks the covered ones (see markCovered). Views start as the subPaths.
func prepareMounts(ms []Mount) ([]*mount, error) {
	if len(ms) == 0 {
		return nil, usagef("at least one --mount is required")
	}
	out := make([]*mount, 0, len(ms))
	for _, m := range ms {
		if m.Dir == "" {
			return nil, usagef("--mount with an empty directory")
		}
		sub, err := cleanSubPath(m.SubPath)
		if err != nil {
			return nil, err
		}
		abs, err := filepath.Abs(m.Dir)
		if err != nil {
			return nil, usagef("--mount %s: %v", m.Dir, err)
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, fmt.Errorf("mount %s: %w", abs, err)
		}
		out = append(out, &mount{Mount: Mount{Dir: m.Dir, SubPath: sub}, view: sub, abs: abs})
	}
	markCovered(out)
	return out, nil
}

// markCovered orders mounts by view length and marks as covered a mount
// whose directory is the same directory as the matching path inside another
// mount with a shorter view (several subPath views of one emptyDir in one
// pod): it is written and scanned once, through the other.
func markCovered(ms []*mount) {
	sort.SliceStable(ms, func(i, j int) bool { return len(ms[i].view) < len(ms[j].view) })
	for i, b := range ms {
		b.covered = false
		for _, a := range ms[:i] {
			if a.covered {
				continue
			}
			rel, ok := a.local(b.view)
			if !ok {
				continue
			}
			if a.abs == b.abs && rel == "" || sameDir(filepath.Join(a.abs, filepath.FromSlash(rel)), b.abs) {
				b.covered = true
				break
			}
		}
	}
}

func sameDir(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// maxLinkHops bounds symlink resolution, as the kernel's ELOOP does.
const maxLinkHops = 40

// resolveView resolves a subPath through the workspace's symlinks (path ->
// target, relative to the workspace root) the way the kubelet resolves a
// subPath on a PVC: component by component, relative targets from the
// link's directory. A subPath that leaves the workspace (an absolute target
// or too many ..) is refused, as the kubelet refuses to start such a pod.
func resolveView(sub string, links map[string]string) (string, error) {
	if sub == "" || len(links) == 0 {
		return sub, nil
	}
	todo := strings.Split(sub, "/")
	var cur []string
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return "", fmt.Errorf("subPath %q resolves outside the workspace (the kubelet refuses such a subPath on a PVC too)", sub)
			}
			cur = cur[:len(cur)-1]
			continue
		}
		cand := path.Join(append(cur[:len(cur):len(cur)], c)...)
		target, ok := links[cand]
		if !ok {
			cur = append(cur, c)
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", fmt.Errorf("subPath %q: too many levels of symlinks", sub)
		}
		if path.IsAbs(target) {
			return "", fmt.Errorf("subPath %q passes through the symlink %s -> %s, outside the workspace (the kubelet refuses such a subPath on a PVC too)", sub, cand, target)
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return strings.Join(cur, "/"), nil
}

// viewsOverlap reports whether two views of one workspace share paths.
func viewsOverlap(a, b string) bool {
	return a == "" || b == "" || under(a, b) || under(b, a)
}
