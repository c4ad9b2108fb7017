package transport

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// PullOptions configure a pull.
type PullOptions struct {
	Options
	From     []string // producer pipeline-task names, in order
	Mounts   []Mount
	StateDir string
	Limits   Limits
	// Optional are producers Tekton may legitimately not have run to
	// success (a when on them or their ancestors, a matrix, onError:
	// continue): no artifact from them is no error.
	Optional []string
	// Status is Tekton's own word on producers (finally tasks get
	// $(tasks.<name>.status)): Succeeded means its artifact must exist,
	// anything else that it may not. It overrides Optional.
	Status map[string]string
}

// required reports whether a producer's artifact must exist.
func (o *PullOptions) required(task string) bool {
	if st, ok := o.Status[task]; ok {
		return st == "Succeeded"
	}
	return !slices.Contains(o.Optional, task)
}

// PullResult summarises a pull.
type PullResult struct {
	Applied   []string // tags applied, in order
	Skipped   []string // producers with no tag
	Unrelated []string // tags whose producer's views do not overlap ours
	Files     int64
	Bytes     int64
	Conflicts int
}

type delta struct {
	tag    string
	desc   ocispec.Descriptor
	m      *ocispec.Manifest
	base   map[string]bool
	config deltaConfig
	views  []string // the producer's views; nil = unknown (all)
}

const maxConflictLines = 50

// Pull applies the deltas of the producers in order to the mounts and
// records the resulting baseline in StateDir.
func Pull(ctx context.Context, o PullOptions) (*PullResult, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	for _, t := range o.From {
		if !ValidTag(t) {
			return nil, usagef("--from: %q is not a valid pipeline task name / tag", t)
		}
	}
	if o.StateDir == "" {
		return nil, usagef("--state is required")
	}
	mounts, err := prepareMounts(o.Mounts)
	if err != nil {
		return nil, err
	}
	if err := makeStateDir(o.StateDir); err != nil {
		return nil, err
	}
	log := o.Log
	res := &PullResult{}
	t0 := time.Now()
	var deltas []*delta
	var written *writtenSet // what the applied deltas wrote
	if len(o.From) > 0 {
		c, err := newClient(&o.Options)
		if err != nil {
			return nil, err
		}
		tags, err := c.listTags(ctx)
		if err != nil {
			return nil, err
		}
		deltas, err = o.selectDeltas(tags, res)
		if err != nil {
			return nil, err
		}
		log.Info("pull: tags", "repository", o.Repository, "tags", len(tags), "deltas", len(deltas), "seconds", secs(time.Since(t0)))
		if err := fetchDeltas(ctx, c, deltas, o.Concurrency); err != nil {
			return nil, err
		}
		if err := resolveViews(mounts, deltas); err != nil {
			return nil, err
		}
		var apply []*delta
		for _, d := range deltas {
			if d.reaches(mounts) {
				apply = append(apply, d)
				continue
			}
			res.Unrelated = append(res.Unrelated, d.tag)
			log.Info("pull: not applied (its views do not overlap this task's)", "tag", d.tag, "views", d.views)
		}
		ex, err := newExtractor(mounts, o.Limits)
		if err != nil {
			return nil, err
		}
		ex.spillDir = o.StateDir
		defer ex.close()
		t1 := time.Now()
		ct, err := applyDeltas(ctx, c, ex, apply, res, o.Concurrency, log)
		if err != nil {
			return nil, err
		}
		if err := ex.finish(); err != nil {
			return nil, err
		}
		written = ct.written
		for _, d := range apply {
			res.Applied = append(res.Applied, d.tag)
		}
		res.Files, res.Bytes = ex.files.Load(), ex.bytes.Load()
		el := time.Since(t1)
		log.Info("pull: extract", "deltas", len(apply), "files", res.Files, "bytes", res.Bytes,
			"conflicts", res.Conflicts, "seconds", secs(el), "MB/s", mbps(res.Bytes, el))
	}
	// the workspace root's own metadata, once everything below it is in place
	if err := pullRoot(mounts, deltas, o.StateDir, log); err != nil {
		return nil, err
	}
	// The baseline is the ancestors' state: what the deltas wrote, as it
	// now is on disk. Whatever else the directory holds (a sidecar's files,
	// the directory the kubelet made for a subPath) the push stores as this
	// task's change, as a PVC would keep it.
	t2 := time.Now()
	// The base of this task's delta is every delta it considered (applied
	// or out of its views): none of them can conflict with what it writes.
	considered := make([]string, 0, len(deltas))
	for _, d := range deltas {
		considered = append(considered, d.desc.Digest.String())
	}
	kept, err := writePullBaseline(o.StateDir, considered, mounts, written)
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", o.StateDir, err)
	}
	log.Info("pull: baseline", "entries", kept, "seconds", secs(time.Since(t2)),
		"total_seconds", secs(time.Since(t0)), "MB/s", mbps(res.Bytes, time.Since(t0)))
	return res, nil
}

// selectDeltas picks, for each producer in order, its tag and then its
// matrix instances' tags (sorted), and fails when a producer whose
// artifact must exist has none.
func (o *PullOptions) selectDeltas(tags []string, res *PullResult) ([]*delta, error) {
	sort.Strings(tags)
	var deltas []*delta
	var missing []string
	seen := map[string]bool{}
	for _, t := range o.From {
		if seen[t] {
			continue
		}
		seen[t] = true
		var matched []string
		for _, tag := range tags {
			if tag == t || strings.HasPrefix(tag, t+".") {
				matched = append(matched, tag)
			}
		}
		if len(matched) == 0 {
			if o.required(t) {
				missing = append(missing, t)
				continue
			}
			o.Log.Info("pull: no artifact (the task was skipped, or did not run to its push)", "task", t)
			res.Skipped = append(res.Skipped, t)
		}
		sort.Slice(matched, func(i, j int) bool { // the bare tag first, then instances
			if (matched[i] == t) != (matched[j] == t) {
				return matched[i] == t
			}
			return matched[i] < matched[j]
		})
		for _, tag := range matched {
			deltas = append(deltas, &delta{tag: tag})
		}
	}
	if len(missing) > 0 {
		return nil, &MissingError{Repository: o.Registry + "/" + o.Repository, Tasks: missing}
	}
	return deltas, nil
}

// resolveViews resolves every mount's subPath through the symlinks the
// deltas leave in the workspace, in order (a later delta's deletion or
// type change removes an earlier symlink), and re-marks covered mounts.
func resolveViews(mounts []*mount, deltas []*delta) error {
	links := map[string]string{}
	for _, d := range deltas {
		for _, del := range d.config.Deletions {
			for p := range links {
				if under(p, del) {
					delete(links, p)
				}
			}
		}
		for p, t := range d.config.Symlinks {
			links[p] = t
		}
	}
	for _, m := range mounts {
		v, err := resolveView(m.SubPath, links)
		if err != nil {
			return fmt.Errorf("mount %s: %w", m.Dir, err)
		}
		m.view = v
	}
	markCovered(mounts)
	return checkAliasedViews(mounts)
}

// checkAliasedViews refuses two views whose subPaths are apart but meet
// through the workspace's symlinks (`releases` and `current ->
// releases/v1`) and are two directories here. On a PVC the kubelet
// resolves both into one volume, so the task sees its writes through either
// name; in this pod the kubelet made both subPath directories in the
// emptyDir before any symlink existed, so they are apart and no pull can
// join them (outside case subpath-symlink-aliases-in-one-task: the task's
// own writes through one name were missing through the other). Failing here
// says so before the task's steps run, instead of a silently different tree.
func checkAliasedViews(mounts []*mount) error {
	for i, a := range mounts {
		for _, b := range mounts[i+1:] {
			if a.covered || b.covered || !viewsOverlap(a.view, b.view) {
				continue
			}
			sa, sb := strings.Trim(a.SubPath, "/"), strings.Trim(b.SubPath, "/")
			if sa == "" || sb == "" || under(sa, sb) || under(sb, sa) {
				continue // views the task declared overlapping: the covered logic's
			}
			return fmt.Errorf("subPaths %q and %q are one place of the workspace through its symlinks (%q and %q), as the kubelet resolves them on a PVC, but two directories in this pod: the task could not see its writes through both; run it on a PVC (opt-in label \"false\" on the run)", a.SubPath, b.SubPath, a.view, b.view)
		}
	}
	return nil
}

// reaches reports whether any of the producer's views overlaps a mount's.
func (d *delta) reaches(mounts []*mount) bool {
	if d.views == nil {
		return true
	}
	for _, v := range d.views {
		for _, m := range mounts {
			if viewsOverlap(v, m.view) {
				return true
			}
		}
	}
	return false
}

func fetchDeltas(ctx context.Context, c *client, deltas []*delta, conc int) error {
	var wg sync.WaitGroup
	errs := make([]error, len(deltas))
	sem := make(chan struct{}, conc)
	for i, d := range deltas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = fetchDelta(ctx, c, d)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func fetchDelta(ctx context.Context, c *client, d *delta) error {
	desc, m, err := c.fetchManifest(ctx, d.tag)
	if err != nil {
		return err
	}
	d.desc, d.m = desc, m
	if m.ArtifactType != ArtifactType {
		return refuse(d.tag, "not a workspace delta (artifactType %q)", m.ArtifactType)
	}
	if m.Config.MediaType != ConfigMediaType {
		return refuse(d.tag, "unexpected config media type %q", m.Config.MediaType)
	}
	for _, l := range m.Layers {
		if _, ok := codecForMediaType(l.MediaType); !ok {
			return refuse(d.tag, "layer %s has unsupported media type %q", l.Digest, l.MediaType)
		}
		if err := l.Digest.Validate(); err != nil || l.Digest.Algorithm() != digest.SHA256 || l.Size < 0 {
			return refuse(d.tag, "layer %q has an invalid digest or size", l.Digest)
		}
	}
	if err := m.Config.Digest.Validate(); err != nil {
		return refuse(d.tag, "config has an invalid digest")
	}
	data, err := c.fetchSmallBlob(ctx, m.Config, maxConfigBytes)
	if err != nil {
		return err
	}
	if err := jsonUnmarshal(data, &d.config); err != nil {
		return refuse(d.tag, "config is not valid JSON: %v", err)
	}
	for _, p := range d.config.Deletions {
		if err := checkRelPath(p); err != nil {
			return refuse(p, "deleted path in %s: %v", d.tag, err)
		}
	}
	for p, target := range d.config.Symlinks {
		if err := checkRelPath(p); err != nil {
			return refuse(p, "symlink in %s: %v", d.tag, err)
		}
		if target == "" || strings.ContainsRune(target, 0) {
			return refuse(p, "symlink in %s has an empty target or a NUL byte", d.tag)
		}
	}
	if v, ok := m.Annotations[AnnotationViews]; ok {
		if err := jsonUnmarshal([]byte(v), &d.views); err != nil || d.views == nil {
			return refuse(d.tag, "annotation %s is not a JSON list of views: %q", AnnotationViews, v)
		}
		for _, p := range d.views {
			if p != "" && checkRelPath(p) != nil {
				return refuse(d.tag, "annotation %s holds an invalid view %q", AnnotationViews, p)
			}
		}
	}
	d.base = map[string]bool{}
	if b := m.Annotations[AnnotationBase]; b != "" {
		for _, x := range strings.Split(b, ",") {
			d.base[x] = true
		}
	}
	return nil
}

type writer struct{ delta, layer int }

type conflictTracker struct {
	mu      sync.Mutex
	written *writtenSet // path -> what last wrote it
	deltas  []*delta
	count   int
	log     interface{ Warn(string, ...any) }
}

func (ct *conflictTracker) conflict(p string, i, j int, what string) {
	if ct.deltas[j].base[ct.deltas[i].desc.Digest.String()] {
		return // j was produced on top of i: an ordinary later edit
	}
	ct.count++
	if ct.count <= maxConflictLines {
		ct.log.Warn("pull: conflict, later delta wins", "path", p, "action", what,
			"winner", ct.deltas[j].tag, "loser", ct.deltas[i].tag)
	}
}

// onEntry records that layer li of delta j writes an entry, refusing a path
// that two layers of the delta write (ancestor directories repeat in every
// layer, and a retried layer repeats itself) and counting a conflict when
// it overwrites what an earlier delta not in j's base wrote.
func (ct *conflictTracker) onEntry(j, li int) entryFunc {
	return func(p string, typ byte) error {
		ct.mu.Lock()
		defer ct.mu.Unlock()
		if w, ok := ct.written.get(p); ok {
			if w.delta == j {
				if typ == typeDir || w.layer == li {
					return nil
				}
				return refuse(p, "path appears twice in %s", ct.deltas[j].tag)
			}
			if typ != typeDir {
				ct.conflict(p, w.delta, j, "overwritten")
			}
		}
		if !ct.written.set(p, writer{j, li}) {
			return refuse(p, "the entries' names are over %d bytes in all", uint64(maxWrittenNames))
		}
		return nil
	}
}

// applyDeltas applies the deltas in order and returns what wrote each path.
func applyDeltas(ctx context.Context, c *client, ex *extractor, deltas []*delta, res *PullResult, conc int, log interface {
	Warn(string, ...any)
	Info(string, ...any)
}) (*conflictTracker, error) {
	ct := &conflictTracker{written: newWrittenSet(), deltas: deltas, log: log}
	for j, d := range deltas {
		// deletions first: what earlier deltas wrote there is gone (all
		// written paths were written by earlier deltas: j's come after)
		ct.written.deleteUnder(d.config.Deletions, func(q string, w writer) {
			ct.conflict(q, w.delta, j, "deleted")
		})
		for _, p := range d.config.Deletions {
			if err := ex.remove(p); err != nil {
				return nil, err
			}
		}
		onEntry := func(li int) entryFunc { return ct.onEntry(j, li) }
		var wg sync.WaitGroup
		sem := make(chan struct{}, conc)
		errs := make([]error, len(d.m.Layers))
		var dl atomic.Int64
		t := time.Now()
		for li, l := range d.m.Layers {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				errs[li] = c.withRetry(ctx, fmt.Sprintf("pull layer %s of %s", l.Digest, d.tag), func() error {
					n, err := pullLayer(ctx, c, ex, l, onEntry(li))
					dl.Add(n)
					return err
				})
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		log.Info("pull: applied", "tag", d.tag, "layers", len(d.m.Layers), "deletions", len(d.config.Deletions),
			"files", d.m.Annotations[AnnotationFiles], "downloaded", dl.Load(), "seconds", secs(time.Since(t)))
	}
	res.Conflicts = ct.count
	if ct.count > maxConflictLines {
		log.Warn("pull: more conflicts not shown", "count", ct.count-maxConflictLines)
	}
	return ct, nil
}

// remove applies a deletion to every mount.
func (ex *extractor) remove(p string) error {
	for mi, m := range ex.mounts {
		root := ex.roots[mi]
		local, ok := m.local(p)
		if !ok {
			if under(m.view, p) { // the whole view was deleted: empty it
				if err := emptyRoot(root); err != nil {
					return err
				}
			}
			continue
		}
		if local == "" {
			if err := emptyRoot(root); err != nil {
				return err
			}
			continue
		}
		// do not delete through a symlinked parent
		if i := strings.LastIndexByte(local, '/'); i > 0 {
			if fi, err := root.Lstat(local[:i]); err != nil || !fi.IsDir() {
				continue
			}
		}
		if err := root.RemoveAll(local); err != nil {
			return fmt.Errorf("delete %s: %w", p, err)
		}
	}
	return nil
}

// verifier hashes a blob as it is read and tells network errors apart.
type verifier struct {
	r       io.Reader
	h       hash.Hash
	n       int64
	readErr error
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err != nil && err != io.EOF {
		v.readErr = err
	}
	return n, err
}

// pullLayer streams one layer: download, verify, decompress, extract.
func pullLayer(ctx context.Context, c *client, ex *extractor, l ocispec.Descriptor, onEntry entryFunc) (int64, error) {
	cdc, _ := codecForMediaType(l.MediaType)
	title := strings.TrimSuffix(strings.TrimSuffix(l.Annotations[AnnotationTitle], ".tar.zst"), ".tar")
	if l.Size > ex.limits.MaxBytes*2+(1<<20) {
		return 0, refuse(l.Digest.String(), "layer of %d bytes is over the limit", l.Size)
	}
	rc, err := c.repo.Blobs().Fetch(ctx, l)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	v := &verifier{r: io.LimitReader(rc, l.Size+1), h: sha256.New()}
	zr, err := cdc.newReader(v)
	var exErr error
	if err != nil {
		exErr = &corruptError{err}
	} else {
		exErr = ex.extractTar(zr, title, onEntry)
		zr.Close()
	}
	if v.readErr != nil {
		return v.n, v.readErr
	}
	if _, err := io.Copy(io.Discard, v); err != nil {
		return v.n, err
	}
	if v.n != l.Size || digest.NewDigest(digest.SHA256, v.h) != l.Digest {
		return v.n, refuse(l.Digest.String(), "blob digest mismatch (%d bytes read, %d expected): tampered or corrupt layer", v.n, l.Size)
	}
	var ce *corruptError
	if errors.As(exErr, &ce) {
		return v.n, refuse(l.Digest.String(), "%v", exErr)
	}
	return v.n, exErr
}

// emptyRoot removes everything inside a mount but not the mount itself.
func emptyRoot(root *os.Root) error {
	f, err := root.Open(".")
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := root.RemoveAll(n); err != nil {
			return err
		}
	}
	return nil
}
