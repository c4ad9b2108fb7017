package transport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The workspace root's own metadata: the directory the root view is
// mounted on ("." of $(workspaces.ws.path)). A delta lists entries below
// the root, and a subPath view's directory is the entry at its path; the
// root itself is no entry (no path names it), so its mode, owner and mtime
// travel in the delta config instead ("root"), and only what a task
// changed: a task that `chgrp 1234 . && chmod 2775 .` (a shared group
// folder) pushes its mode and group, one that creates a file at the root
// its mtime, one that does neither nothing. On the emptyDir every task
// starts from the kubelet's root (0777 root:root, or the fsGroup's group):
// that is not a change, so the pull records the root as it left it
// (rootStateFile) and the push compares with that.

// rootMeta is what a delta says of the workspace root: each field only
// when the producer changed it (nil: whatever the puller's root has).
type rootMeta struct {
	// Mode is the permission bits with setuid/setgid/sticky in the tar
	// encoding (04000/02000/01000): never a type, a root is a directory.
	Mode  *uint32 `json:"mode,omitempty"`
	UID   *uint32 `json:"uid,omitempty"`
	GID   *uint32 `json:"gid,omitempty"`
	Mtime *int64  `json:"mtime,omitempty"` // ns since the epoch
}

// check refuses what no directory's metadata is: a type or other bits in
// the mode (a root is never a file or a symlink), the owner -1 (chown's "no
// change").
func (r *rootMeta) check() error {
	if r == nil {
		return nil
	}
	if r.Mode != nil && *r.Mode&^0o7777 != 0 {
		return fmt.Errorf("workspace root: mode %#o is not permission bits (a root is a directory)", *r.Mode)
	}
	if r.UID != nil && *r.UID == math.MaxUint32 || r.GID != nil && *r.GID == math.MaxUint32 {
		return fmt.Errorf("workspace root: owner -1")
	}
	return nil
}

func (r *rootMeta) empty() bool {
	return r == nil || r.Mode == nil && r.UID == nil && r.GID == nil && r.Mtime == nil
}

// over returns r with the fields later sets (a later delta wins, field by
// field: a task that only added a file keeps the mode an ancestor set).
func (r rootMeta) over(later *rootMeta) rootMeta {
	if later == nil {
		return r
	}
	if later.Mode != nil {
		r.Mode = later.Mode
	}
	if later.UID != nil {
		r.UID = later.UID
	}
	if later.GID != nil {
		r.GID = later.GID
	}
	if later.Mtime != nil {
		r.Mtime = later.Mtime
	}
	return r
}

func (r *rootMeta) logAttrs() []any {
	var a []any
	if r.Mode != nil {
		a = append(a, "mode", fmt.Sprintf("%#o", *r.Mode))
	}
	if r.UID != nil {
		a = append(a, "uid", *r.UID)
	}
	if r.GID != nil {
		a = append(a, "gid", *r.GID)
	}
	if r.Mtime != nil {
		a = append(a, "mtime", time.Unix(0, *r.Mtime).UTC().Format(time.RFC3339Nano))
	}
	return a
}

// rootStat is a root directory as it is on disk.
type rootStat struct {
	Dir   []byte `json:"dir"` // the mount directory (bytes: any name)
	Mode  uint32 `json:"mode"`
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	Mtime int64  `json:"mtime"`
}

func statRoot(dir string) (rootStat, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return rootStat{}, fmt.Errorf("mount %s: %w", dir, err)
	}
	return rootStat{Dir: []byte(dir), Mode: tarMode(st.Mode), UID: st.Uid, GID: st.Gid, Mtime: st.Mtim.Nano()}, nil
}

// rootStateFile is where the pull leaves, next to the baseline, each root
// view's root as the pull left it: the ancestors' root where the pull could
// apply it, else the kubelet's as it found it.
const rootStateFile = "root.v1"

// rootViews are the mounts that show the workspace root itself.
func rootViews(ms []*mount) []*mount {
	var out []*mount
	for _, m := range ms {
		if m.view == "" && !m.covered {
			out = append(out, m)
		}
	}
	return out
}

// pullRoot applies the workspace root the deltas that reach the mounts
// leave (field by field, the later delta winning) to every root view, after
// everything below it is written (a 0500 root is applied last, and nothing
// changes its mtime after), then records the roots in stateDir for the
// push. The owner is applied as root; as another user only a group the
// step's user is in, on a directory it owns, and the mode and times on a
// directory it owns, as a task's own step could have (the kubelet's
// root:root directory is left as it is).
func pullRoot(ms []*mount, deltas []*delta, stateDir string, log *slog.Logger) error {
	views := rootViews(ms)
	var want rootMeta
	for _, d := range deltas {
		if d.reaches(ms) {
			want = want.over(d.config.Root)
		}
	}
	var states []rootStat
	for _, m := range views {
		if !want.empty() {
			skipped, err := applyRoot(m.abs, &want)
			if err != nil {
				return err
			}
			attrs := append(want.logAttrs(), "dir", m.abs)
			if len(skipped) > 0 {
				attrs = append(attrs, "not applied", strings.Join(skipped, ","), "why", "the step's user may not (not root, not the owner, or not in the group)")
			}
			log.Info("pull: workspace root", attrs...)
		}
		st, err := statRoot(m.abs)
		if err != nil {
			return err
		}
		states = append(states, st)
	}
	return writeRootState(stateDir, states)
}

// applyRoot gives the directory the metadata r sets and returns what the
// step may not change (EPERM, a read-only mount): the owner, the mode, the
// times.
func applyRoot(dir string, r *rootMeta) (skipped []string, err error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	defer unix.Close(fd)
	mayNot := func(what string, err error) error {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS) {
			skipped = append(skipped, what)
			return nil
		}
		return fmt.Errorf("workspace root %s: %s: %w", dir, what, err)
	}
	// the owner first: chown(2) may clear setgid
	if r.UID != nil || r.GID != nil {
		uid, gid := -1, -1
		if os.Geteuid() == 0 {
			if r.UID != nil {
				uid = int(*r.UID)
			}
			if r.GID != nil {
				gid = int(*r.GID)
			}
		} else if r.GID != nil && inGroup(int(*r.GID)) {
			gid = int(*r.GID) // as extractor.owner: a group the user is in
		}
		if uid == -1 && gid == -1 {
			skipped = append(skipped, "owner")
		} else if err := unix.Fchown(fd, uid, gid); err != nil {
			if err := mayNot("owner", err); err != nil {
				return nil, err
			}
		}
	}
	if r.Mode != nil {
		// the tar bits 04000/02000/01000 are S_ISUID/S_ISGID/S_ISVTX
		if err := unix.Fchmod(fd, *r.Mode&0o7777); err != nil {
			if err := mayNot("mode", err); err != nil {
				return nil, err
			}
		}
	}
	if r.Mtime != nil {
		if err := futimens(fd, time.Unix(0, *r.Mtime)); err != nil {
			if err := mayNot("mtime", err); err != nil {
				return nil, err
			}
		}
	}
	return skipped, nil
}

// inGroup reports whether the step's user is in group gid (effective or
// supplementary).
func inGroup(gid int) bool {
	if os.Getegid() == gid {
		return true
	}
	gs, err := os.Getgroups()
	if err != nil {
		return false
	}
	for _, g := range gs {
		if g == gid {
			return true
		}
	}
	return false
}

func writeRootState(stateDir string, states []rootStat) error {
	if stateDir == "" {
		return nil
	}
	b, err := json.Marshal(states)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(stateDir, ".root-*")
	if err != nil {
		return fmt.Errorf("state %s: %w", stateDir, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o644) // the push may run as another user
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(stateDir, rootStateFile))
	}
	if err != nil {
		return fmt.Errorf("state %s: %w", stateDir, err)
	}
	return nil
}

// pushRoot returns what the task changed of the workspace root: the fields
// of its root view's root that differ from what its pull left (nil when
// none, when it has no root view, or when no pull recorded the root: there
// is then nothing to tell the task's change from the kubelet's directory).
func pushRoot(stateDir string, ms []*mount, log *slog.Logger) (*rootMeta, error) {
	views := rootViews(ms)
	if len(views) == 0 || stateDir == "" {
		return nil, nil
	}
	m := views[0] // as scanMounts: the first mount wins
	b, err := os.ReadFile(filepath.Join(stateDir, rootStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return kubeletRootChange(m, log)
	}
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", stateDir, err)
	}
	var states []rootStat
	if err := json.Unmarshal(b, &states); err != nil {
		return nil, fmt.Errorf("state %s: corrupt %s: %w", stateDir, rootStateFile, err)
	}
	for _, was := range states {
		if string(was.Dir) != m.abs {
			continue
		}
		cur, err := statRoot(m.abs)
		if err != nil {
			return nil, err
		}
		var ch rootMeta
		if cur.Mode != was.Mode {
			ch.Mode = &cur.Mode
		}
		if cur.UID != was.UID {
			ch.UID = &cur.UID
		}
		if cur.GID != was.GID {
			ch.GID = &cur.GID
		}
		if cur.Mtime != was.Mtime {
			ch.Mtime = &cur.Mtime
		}
		if ch.empty() {
			return nil, nil
		}
		log.Info("push: workspace root", ch.logAttrs()...)
		return &ch, nil
	}
	return nil, nil
}

// kubeletRootChange is pushRoot for a task no pull ran in (the workspace's
// first tasks get no pull step): nothing recorded the root before the task,
// so its mode and owner are compared with what the kubelet makes of an
// emptyDir: 0777 root:root, or with fsGroup 2777 root:<fsGroup> (the kubelet
// adds the setgid bit and gives the group). A root that is neither is the
// task's doing (`chgrp 1234 . && chmod 2775 .` in a setup task: equivalence
// case workspace-root-metadata) and all three go with its delta; one that
// is either is left to each pod's kubelet, as a PVC's root is its driver's.
// The mtime is not sent: without a record of the kubelet's, any entry made
// at the root changed it.
func kubeletRootChange(m *mount, log *slog.Logger) (*rootMeta, error) {
	cur, err := statRoot(m.abs)
	if err != nil {
		return nil, err
	}
	kubelets := cur.UID == 0 && (cur.Mode == 0o777 && cur.GID == 0 || cur.Mode == 0o2777)
	if kubelets {
		return nil, nil
	}
	ch := rootMeta{Mode: &cur.Mode, UID: &cur.UID, GID: &cur.GID}
	log.Info("push: workspace root (no pull before: compared with the kubelet's emptyDir)", ch.logAttrs()...)
	return &ch, nil
}
