package main

// -fault retention: zot's GC and retention doing their job during a run.
//
// test/equivalence/run.sh installs zot with short intervals for this case
// (GC every 15 s, tags kept 100 s after their push). The case's pipeline
// runs three times: "oci-old", converted, to its end; then the PVC run; then
// "oci", converted, which sleeps between its producer and its consumer for
// longer than GC's interval. What must happen:
//
//   - oci-old's tags get older than keepPushedWithin and zot deletes them,
//     and reclaims their blobs: its repositories' directories leave zot's
//     disk (measured on this machine: the emptyDir is a kubelet directory);
//   - zot's GC passes over the in-flight run's repositories while it runs,
//     keeps its tags (pushed within keepPushedWithin), and the run succeeds
//     and is equivalent to the PVC run (the usual comparison).

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
)

type retentionFault struct {
	dataDir  string   // zot's storage on this machine
	oldRepos []string // the ended run's repositories
	oldTags  []string
	oldEnd   time.Time
	oldBytes int64 // oci-old's repositories on disk once it ended
	before   int64 // zot's whole storage then
	peak     int64 // the most zot's storage held while "oci" ran
	start    time.Time
	end      time.Time
	oldGone  time.Time // when oci-old's tags were first seen gone
}

// kubeletRoot is the kubelet's --root-dir (the test bed's: run.sh says).
func kubeletRoot() string { return envOr("KUBELET_ROOT", "/var/lib/kubelet") }

// registryDataDir is where zot's data volume is on this machine: its pod's
// emptyDir under the kubelet's root, or the local or hostPath volume of its
// claim.
func registryDataDir() (string, error) {
	vol, err := registryVolume()
	if err != nil {
		return "", err
	}
	var dir string
	if vol["emptyDir"] != nil {
		out, err := kc(nil, "-n", registryNS, "get", "pods", "-l", registrySelector, "--field-selector=status.phase=Running", "-o", "jsonpath={.items[*].metadata.uid}")
		if err != nil {
			return "", err
		}
		uids := strings.Fields(string(out))
		if len(uids) != 1 {
			return "", fmt.Errorf("want one running zot pod, found %d", len(uids))
		}
		dir = filepath.Join(kubeletRoot(), "pods", uids[0], "volumes", "kubernetes.io~empty-dir", "data")
	} else if claim := s(m(vol, "persistentVolumeClaim"), "claimName"); claim != "" {
		pv, err := kc(nil, "-n", registryNS, "get", "pvc", claim, "-o", "jsonpath={.spec.volumeName}")
		if err != nil {
			return "", err
		}
		out, err := kc(nil, "get", "pv", strings.TrimSpace(string(pv)), "-o", "jsonpath={.spec.hostPath.path}{.spec.local.path}")
		if err != nil {
			return "", err
		}
		dir = strings.TrimSpace(string(out))
	}
	if dir == "" {
		return "", fmt.Errorf("zot's data volume %v is not on this machine", vol)
	}
	if _, err := os.Stat(dir); err != nil {
		return "", fmt.Errorf("zot's storage is not here: %w", err)
	}
	return dir, nil
}

// diskUsage is what dir takes on disk (allocated blocks), each inode counted
// once (zot's dedupe hard-links equal blobs); 0 for a directory that is gone.
func diskUsage(dir string) int64 {
	seen := map[uint64]bool{}
	var n int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && !seen[st.Ino] {
			seen[st.Ino] = true
			n += st.Blocks * 512
		}
		return nil
	})
	return n
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func repositories(ns, uid string, converted map[string]bool) []string {
	var out []string
	for w := range converted {
		out = append(out, fmt.Sprintf("%s/%s/%s/%s", repoPrefix, ns, uid, transform.RepositoryComponent(w)))
	}
	slices.Sort(out)
	return out
}

// afterOld notes what the ended run left: its tags and its bytes on disk.
func (f *retentionFault) afterOld(rr *runResult, converted map[string]bool) error {
	if !strings.HasPrefix(rr.status, "True") {
		return fmt.Errorf("retention: the run that is to expire (oci-old) did not succeed: %s", rr.status)
	}
	dir, err := registryDataDir()
	if err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	f.dataDir, f.oldEnd = dir, time.Now()
	f.oldRepos = repositories(s(m(rr.obj, "metadata"), "namespace"), rr.uid, converted)
	for _, r := range f.oldRepos {
		tags, err := repoTags(r)
		if err != nil || len(tags) == 0 {
			return fmt.Errorf("retention: oci-old left no tags in %s (%v)", r, err)
		}
		f.oldTags = append(f.oldTags, r+":"+strings.Join(tags, ","))
		f.oldBytes += diskUsage(filepath.Join(dir, r))
	}
	f.before = diskUsage(dir)
	fmt.Printf("  retention: oci-old ended; its tags %s hold %s on zot's disk (all of zot's storage: %s)\n",
		strings.Join(f.oldTags, " "), mb(f.oldBytes), mb(f.before))
	return nil
}

// oldTagsGone says whether every repository of oci-old has lost its tags.
func (f *retentionFault) oldTagsGone() bool {
	for _, r := range f.oldRepos {
		if tags, err := repoTags(r); err != nil || len(tags) > 0 {
			return false
		}
	}
	return true
}

// watch samples zot's storage and oci-old's tags while "oci" runs.
func (f *retentionFault) watch(stop <-chan struct{}) string {
	f.start = time.Now()
	for {
		if n := diskUsage(f.dataDir); n > f.peak {
			f.peak = n
		}
		if f.oldGone.IsZero() && f.oldTagsGone() {
			f.oldGone = time.Now()
		}
		select {
		case <-stop:
			f.end = time.Now()
			if f.oldGone.IsZero() {
				return fmt.Sprintf("retention: oci ran %s; oci-old's tags were still there when it ended (%s after oci-old ended)",
					f.end.Sub(f.start).Round(time.Second), f.end.Sub(f.oldEnd).Round(time.Second))
			}
			return fmt.Sprintf("retention: oci ran %s; oci-old's tags were deleted while it ran, %s after oci-old ended; zot's storage peaked at %s",
				f.end.Sub(f.start).Round(time.Second), f.oldGone.Sub(f.oldEnd).Round(time.Second), mb(f.peak))
		case <-time.After(2 * time.Second):
		}
	}
}

// zotLogLine is what the checks read of one of zot's JSON log lines.
type zotLogLine struct {
	Time       time.Time `json:"time"`
	Message    string    `json:"message"`
	Module     string    `json:"module"`
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	Decision   string    `json:"decision"`
	Reason     string    `json:"reason"`
}

func zotLog() ([]zotLogLine, error) {
	out, err := kc(nil, "-n", registryNS, "logs", "deployment/"+registryService)
	if err != nil {
		return nil, err
	}
	var lines []zotLogLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l zotLogLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && (l.Module == "gc" || l.Module == "retention") {
			lines = append(lines, l)
		}
	}
	return lines, sc.Err()
}

// problems waits (up to 5 minutes) for oci-old's repositories to leave
// zot's disk, then checks what zot's GC did during "oci" and prints the
// numbers.
func (f *retentionFault) problems(oci *runResult, converted map[string]bool) []string {
	var out []string
	if oci == nil {
		return []string{"retention: no converted run"}
	}
	deadline := time.Now().Add(5 * time.Minute)
	reclaimed := func() bool {
		for _, r := range f.oldRepos {
			if diskUsage(filepath.Join(f.dataDir, r)) > 0 {
				return false
			}
		}
		return true
	}
	for time.Now().Before(deadline) && !(f.oldTagsGone() && reclaimed()) {
		time.Sleep(2 * time.Second)
	}
	if f.oldGone.IsZero() && f.oldTagsGone() {
		f.oldGone = time.Now()
	}
	waited := time.Since(f.oldEnd).Round(time.Second)
	after, oldAfter, ociAfter := diskUsage(f.dataDir), int64(0), int64(0)
	for _, r := range f.oldRepos {
		oldAfter += diskUsage(filepath.Join(f.dataDir, r))
	}
	ociRepos := repositories(s(m(oci.obj, "metadata"), "namespace"), oci.uid, converted)
	for _, r := range ociRepos {
		ociAfter += diskUsage(filepath.Join(f.dataDir, r))
	}
	if !f.oldTagsGone() {
		out = append(out, fmt.Sprintf("retention: oci-old's tags are still there %s after it ended", waited))
	}
	if oldAfter > 0 {
		out = append(out, fmt.Sprintf("retention: oci-old's repositories still take %s on zot's disk %s after it ended (their blobs were not reclaimed)", mb(oldAfter), waited))
	}

	logs, err := zotLog()
	if err != nil {
		return append(out, "retention: zot's log: "+err.Error())
	}
	passes, kept, deleted, oldDeleted := 0, 0, 0, 0
	for _, l := range logs {
		inFlight := !l.Time.Before(f.start) && !l.Time.After(f.end)
		for _, r := range ociRepos {
			switch {
			case inFlight && strings.HasPrefix(l.Message, "executing gc of orphaned blobs for ") && strings.HasSuffix(l.Message, "/"+r):
				passes++
			case l.Module == "retention" && l.Repository == r && l.Tag != "" && l.Decision == "keep" && inFlight:
				kept++
			case l.Module == "retention" && l.Repository == r && l.Tag != "" && l.Decision == "delete" && !l.Time.After(f.end):
				deleted++
				out = append(out, fmt.Sprintf("retention: zot deleted tag %s of the run in flight (%s)", l.Tag, l.Reason))
			}
		}
		for _, r := range f.oldRepos {
			if l.Module == "retention" && l.Repository == r && l.Tag != "" && l.Decision == "delete" {
				oldDeleted++
			}
		}
	}
	if passes == 0 {
		out = append(out, fmt.Sprintf("retention: zot's GC never passed over the run in flight's repositories while it ran (%s): the case did not exercise GC during a run", f.end.Sub(f.start).Round(time.Second)))
	}
	if oldDeleted == 0 {
		out = append(out, "retention: zot's log has no retention decision `delete` for oci-old's tags")
	}
	fmt.Printf("  retention: zot's GC passed %d time(s) over oci's repositories while oci ran (%s), kept its tags %d time(s) (pushed within keepPushedWithin), deleted none of them (%d)\n",
		passes, f.end.Sub(f.start).Round(time.Second), kept, deleted)
	gone := "not gone"
	if !f.oldGone.IsZero() {
		gone = fmt.Sprintf("gone %s after oci-old ended", f.oldGone.Sub(f.oldEnd).Round(time.Second))
	}
	fmt.Printf("  retention: oci-old's tags %s (%d retention decision(s) `delete`); its repositories on disk: %s -> %s\n",
		gone, oldDeleted, mb(f.oldBytes), mb(oldAfter))
	fmt.Printf("  retention: zot's storage on disk: %s when oci-old ended, at most %s while oci ran, %s now (oci's repositories %s, oci-old's %s: %s reclaimed)\n",
		mb(f.before), mb(f.peak), mb(after), mb(ociAfter), mb(oldAfter), mb(f.oldBytes-oldAfter))
	return out
}
