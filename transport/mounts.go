package transport

import (
	"fmt"
	"os"
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

// ParseMount parses the DIR=SUBPATH form of --mount.
func ParseMount(s string) (Mount, error) {
	i := strings.LastIndexByte(s, '=')
	if i <= 0 {
		return Mount{}, usagef("--mount %q: want DIR=SUBPATH (SUBPATH may be empty)", s)
	}
	sub, err := cleanSubPath(s[i+1:])
	if err != nil {
		return Mount{}, err
	}
	return Mount{Dir: s[:i], SubPath: sub}, nil
}

type mount struct {
	Mount
	abs     string
	covered bool // the same storage is reachable through another mount
}

// local maps a workspace path to a path inside the mount; ok is false when
// the path is outside this view. "" is the mount root.
func (m *mount) local(p string) (string, bool) {
	if m.SubPath == "" {
		return p, true
	}
	if p == m.SubPath {
		return "", true
	}
	if len(p) > len(m.SubPath) && p[len(m.SubPath)] == '/' && p[:len(m.SubPath)] == m.SubPath {
		return p[len(m.SubPath)+1:], true
	}
	return "", false
}

// prepareMounts validates mounts, creates missing mount directories, and
// marks as covered a mount whose directory is the same directory as the
// matching path inside another mount with a shorter subPath (several
// subPath views of one emptyDir in one pod).
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
		out = append(out, &mount{Mount: Mount{Dir: m.Dir, SubPath: sub}, abs: abs})
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].SubPath) < len(out[j].SubPath) })
	for i, b := range out {
		for _, a := range out[:i] {
			if a.covered {
				continue
			}
			rel, ok := a.local(b.SubPath)
			if !ok {
				continue
			}
			if a.abs == b.abs && rel == "" || sameDir(filepath.Join(a.abs, filepath.FromSlash(rel)), b.abs) {
				b.covered = true
				break
			}
		}
	}
	return out, nil
}

func sameDir(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}
