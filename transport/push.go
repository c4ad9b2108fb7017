package transport

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// PushOptions configure a push.
type PushOptions struct {
	Options
	Tag         string
	Task        string
	Mounts      []Mount
	StateDir    string
	Compression string // gzip, zstd, none; "" = DefaultCompression
	LayerSize   int64  // target uncompressed bytes per layer; 0 = DefaultLayerSize
	// MemoryBudget is the memory the push may use (its container's memory
	// limit): it sizes the compression and upload buffers and may lower the
	// concurrency (budget.go); 0 = DefaultMemoryBudget.
	MemoryBudget int64
	// SpoolMemory is how many compressed bytes of a layer are buffered: a
	// layer that fits is uploaded whole (after a HEAD), a bigger one is sent
	// while it is compressed, streamed or, for a registry that refuses
	// streams, in chunks of this size, or, for one that refuses chunks too,
	// spooled into an unlinked file in StateDir (an emptyDir the step owns;
	// the step image needs no /tmp) and uploaded whole (upload.go); 0 = from
	// MemoryBudget.
	SpoolMemory int
	// Now is the creation time recorded in the manifest (tests); zero = now.
	Now time.Time
}

// Defaults, chosen by measurement (see README.md).
const (
	DefaultCompression = CompressionZstd
	DefaultLayerSize   = 64 << 20
)

// PushResult summarises a push.
type PushResult struct {
	Manifest  ocispec.Descriptor
	Files     int
	Bytes     int64
	Deletions int
	Layers    int
	Uploaded  int
	// Streamed counts the layers sent while compressed, streamed or in
	// chunks (the others fitted in the buffer, or were spooled).
	Streamed int
}

type layerPlan struct {
	title   string
	entries []*record // into the changed records: a plan holds no copy
	bytes   int64
	dirs    map[string]ancestorMeta // every directory of the scan, for ancestors
	roots   []srcRoot               // the mounts, by record.mnt: where files are read
}

// ancestorMeta is what a layer needs of a directory it carries as an ancestor.
type ancestorMeta struct {
	mode, uid, gid uint32
	mtime          int64
}

// Push computes what changed in the mounts since the baseline in StateDir
// and pushes it as one tagged delta artifact.
func Push(ctx context.Context, o PushOptions) (*PushResult, error) {
	if err := o.setDefaults(); err != nil {
		return nil, err
	}
	if !ValidTag(o.Tag) {
		return nil, usagef("--tag %q is not a valid OCI tag", o.Tag)
	}
	if o.Compression == "" {
		o.Compression = DefaultCompression
	}
	cdc, err := codecFor(o.Compression)
	if err != nil {
		return nil, err
	}
	if o.LayerSize <= 0 {
		o.LayerSize = DefaultLayerSize
	}
	mounts, err := prepareMounts(o.Mounts)
	if err != nil {
		return nil, err
	}
	if err := makeStateDir(o.StateDir); err != nil {
		return nil, err
	}
	c, err := newClient(&o.Options)
	if err != nil {
		return nil, err
	}
	log := o.Log

	// scan
	t0 := time.Now()
	base, err := readBaseline(o.StateDir)
	if err != nil {
		return nil, err
	}
	base.applyViews(mounts)
	var skipped scanned
	defer skipped.restoreDirs(log)
	cur, err := scanMounts(mounts, true, &skipped)
	if err != nil {
		return nil, err
	}
	// the directories' metadata before diff reuses cur for the changed ones
	dirs := map[string]ancestorMeta{}
	for i := range cur {
		if r := &cur[i]; r.typ == typeDir {
			dirs[r.path] = ancestorMeta{mode: r.mode, uid: r.uid, gid: r.gid, mtime: r.mtime}
		}
	}
	entries := len(cur)
	root, err := pushRoot(o.StateDir, mounts, log)
	if err != nil {
		return nil, err
	}
	changed, deleted := diff(base.visibleTo(mounts), cur)
	cur = nil
	linkGroups := groupHardLinks(changed)
	var files int
	var raw int64
	for i := range changed {
		if changed[i].typ == typeFile && changed[i].linkTo() == "" {
			files++
			raw += changed[i].size
		}
	}
	if skipped.sockets > 0 {
		log.Warn("push: sockets are not stored (a socket is dead once its process exits)", "count", skipped.sockets, "first", skipped.firstSocket)
	}
	log.Info("push: scan", "entries", entries, "changed", len(changed), "files", files, "bytes", raw,
		"deleted", len(deleted), "hardlinked", linkGroups, "seconds", secs(time.Since(t0)))

	// pack, compress, upload
	t1 := time.Now()
	plans := planLayers(changed, o.LayerSize)
	roots := make([]srcRoot, len(mounts))
	for i, m := range mounts {
		roots[i] = srcRoot{dir: m.abs, view: m.view}
	}
	for i := range plans {
		plans[i].dirs = dirs
		plans[i].roots = roots
	}
	// From here on only the changed records are needed (diff compacted them
	// into cur's storage), and the baseline's records go to the collector
	// (a record each of every path of a big tree).
	base.records = nil
	mem := planPushMemory(o.MemoryBudget, len(changed), o.Concurrency, runtime.GOMAXPROCS(0))
	if o.SpoolMemory > 0 {
		mem.chunk = o.SpoolMemory
	}
	arena := newBlockArena(mem.workers, mem.blocks)
	if _, ok := cdc.(zstdCodec); ok {
		zenc := newZstdEncoder(mem.workers)
		defer zenc.Close()
		cdc = zstdCodec{enc: zenc}
	}
	layers := make([]ocispec.Descriptor, len(plans))
	var compressed atomic.Int64
	var uploaded, streamed atomic.Int32
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	up := newUploader(c, o.StateDir, mem.chunk, mem.concurrency)
	sem := make(chan struct{}, mem.concurrency)
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr error
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	for i, pl := range plans {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			desc := ocispec.Descriptor{MediaType: cdc.mediaType()}
			if o.Compression == CompressionGzip {
				desc.Annotations = map[string]string{AnnotationTitle: pl.title, AnnotationUnpack: "true"}
			} else {
				ext := ".tar"
				if o.Compression == CompressionZstd {
					ext = ".tar.zst"
				}
				desc.Annotations = map[string]string{AnnotationTitle: pl.title + ext}
			}
			res, err := up.pushLayer(ctx, desc, func(w io.Writer) error { return writeLayer(arena, w, cdc, pl) })
			if err != nil {
				fail(err)
				return
			}
			compressed.Add(res.desc.Size)
			if res.uploaded {
				uploaded.Add(1)
			}
			if res.streamed {
				streamed.Add(1)
			}
			layers[i] = res.desc
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	el := time.Since(t1)
	log.Info("push: layers", "layers", len(plans), "uploaded", uploaded.Load(), "bytes", raw,
		"compressed", compressed.Load(), "sentBytes", up.sent.Load(), "streamed", streamed.Load(), "compression", o.Compression,
		"concurrency", mem.concurrency, "workers", mem.workers, "chunk", mem.chunk,
		"seconds", secs(el), "MB/s", mbps(raw, el))

	// config + manifest
	t2 := time.Now()
	cfg, err := encodeConfig(deleted, changed, root)
	if err != nil {
		return nil, err
	}
	cfgDesc := ocispec.Descriptor{MediaType: ConfigMediaType, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	if _, err := c.pushBlob(ctx, cfgDesc, func() io.Reader { return bytes.NewReader(cfg) }); err != nil {
		return nil, err
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	ann := map[string]string{
		AnnotationCreated:   now.UTC().Format(time.RFC3339),
		AnnotationTask:      o.Task,
		AnnotationFiles:     strconv.Itoa(files),
		AnnotationBytes:     strconv.FormatInt(raw, 10),
		AnnotationDeletions: strconv.Itoa(len(deleted)),
	}
	if len(base.applied) > 0 {
		ann[AnnotationBase] = strings.Join(base.applied, ",")
	}
	if views, ok := encodeViews(mounts); ok {
		ann[AnnotationViews] = views
	}
	m := ocispec.Manifest{
		Versioned:    specs.Versioned{SchemaVersion: 2},
		MediaType:    ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType,
		Config:       cfgDesc,
		Layers:       layers,
		Annotations:  ann,
	}
	if m.Layers == nil {
		m.Layers = []ocispec.Descriptor{}
	}
	mb, err := jsonMarshal(m)
	if err != nil {
		return nil, err
	}
	mdesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb)), ArtifactType: ArtifactType}
	err = c.withRetry(ctx, "push manifest "+o.Tag, func() error {
		return c.repo.Manifests().PushReference(ctx, mdesc, bytes.NewReader(mb), o.Tag)
	})
	if err != nil {
		return nil, err
	}
	log.Info("push: manifest", "tag", o.Tag, "digest", mdesc.Digest.String(), "seconds", secs(time.Since(t2)),
		"total_seconds", secs(time.Since(t0)), "MB/s", mbps(raw, time.Since(t0)))
	return &PushResult{Manifest: mdesc, Files: files, Bytes: raw, Deletions: len(deleted), Layers: len(plans), Uploaded: int(uploaded.Load()),
		Streamed: int(streamed.Load())}, nil
}

// scanMounts scans every mount not covered by another and merges the
// records (first mount wins on overlap), sorted by path.
func scanMounts(mounts []*mount, forPush bool, sk *scanned) ([]record, error) {
	var all []record
	seen := map[string]bool{}
	n := 0
	for _, m := range mounts {
		if !m.covered {
			n++
		}
	}
	if len(mounts) > math.MaxUint16+1 {
		return nil, usagef("%d mounts: at most %d", len(mounts), math.MaxUint16+1)
	}
	for i, m := range mounts {
		if m.covered {
			continue
		}
		recs, err := scanMount(m.abs, m.view, uint16(i), forPush, sk)
		if err != nil {
			return nil, err
		}
		if n == 1 {
			all = recs
			break
		}
		for _, r := range recs {
			if !seen[r.path] {
				seen[r.path] = true
				all = append(all, r)
			}
		}
	}
	less := func(i, j int) bool { return pathLess(all[i].path, all[j].path) }
	if !sort.SliceIsSorted(all, less) { // one mount's walk is already in order
		sort.SliceStable(all, less)
	}
	return all, nil
}

// groupHardLinks marks, among the changed files, every name of a file that
// has several (same device and inode) but the first as a link to the first,
// so the delta stores the data once and the puller links the names again.
// A file's names change together: adding or removing a name, or writing
// through one, changes the ctime that every name shows. It returns how many
// names became links.
func groupHardLinks(changed []record) int {
	type key struct{ dev, ino uint64 }
	first := map[key]string{}
	n := 0
	for i := range changed {
		r := &changed[i]
		if r.typ != typeFile || r.hl == nil {
			continue
		}
		k := key{r.hl.dev, r.hl.ino}
		if p, ok := first[k]; ok {
			r.hl.linkTo = p
			n++
			continue
		}
		first[k] = r.path
	}
	return n
}

// pathLess orders paths so that a directory comes right before its
// children ("a", "a/b", "a.txt").
func pathLess(a, b string) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if ca == '/' {
			return true
		}
		if cb == '/' {
			return false
		}
		return ca < cb
	}
	return len(a) < len(b)
}

// maxLayerEntries also cuts layers, so that many small files are read,
// compressed and written on several cores too.
const maxLayerEntries = 4096

// planLayers splits the changed entries into layers of about size bytes,
// deterministically, so an unchanged part of a re-push yields the same blob.
// A hard link goes into the layer of the file it names (after it), since a
// tar link can only name an entry of its own archive.
func planLayers(changed []record, size int64) []layerPlan {
	var plans []layerPlan
	var cur layerPlan
	layerOf := map[string]int{} // files with other names -> their layer
	var links []*record
	flush := func() {
		if len(cur.entries) > 0 {
			cur.title = layerTitle(len(plans))
			plans = append(plans, cur)
			cur = layerPlan{}
		}
	}
	for i := range changed {
		r := &changed[i]
		if r.linkTo() != "" {
			links = append(links, r)
			continue
		}
		n := r.size + 1024
		if cur.bytes > 0 && n >= size/2 {
			flush()
		}
		if r.hl != nil {
			layerOf[r.path] = len(plans)
		}
		cur.entries = append(cur.entries, r)
		cur.bytes += n
		if cur.bytes >= size || len(cur.entries) >= maxLayerEntries {
			flush()
		}
	}
	flush()
	for _, r := range links {
		i := layerOf[r.linkTo()]
		plans[i].entries = append(plans[i].entries, r)
	}
	return plans
}

var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// writeLayer writes the tar of one layer through the compressor into w.
func writeLayer(a *blockArena, w io.Writer, cdc codec, pl layerPlan) error {
	var out io.Writer = w
	var bw *blockWriter
	if _, isNone := cdc.(noneCodec); !isNone {
		bw = newArenaWriter(a, cdc, w)
		out = bw
	}
	err := writeTar(out, pl)
	if bw != nil {
		// the output's own error rather than the writer's "it failed"
		if cerr := bw.Close(); cerr != nil && (err == nil || errors.Is(err, errOutputFailed)) {
			err = cerr
		}
	}
	return err
}

func writeTar(w io.Writer, pl layerPlan) error {
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: pl.title + "/", Mode: 0o755, Format: tar.FormatPAX, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	bufp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bufp)
	emitted := map[string]bool{}
	for _, r := range pl.entries {
		// every ancestor directory is in the layer, so that each layer
		// unpacks on its own (the stock oras CLI needs it)
		for j := 0; j < len(r.path); j++ {
			if r.path[j] != '/' || emitted[r.path[:j]] {
				continue
			}
			d := r.path[:j]
			emitted[d] = true
			h := &tar.Header{Typeflag: tar.TypeDir, Name: pl.title + "/" + d + "/", Format: tar.FormatPAX}
			if a, ok := pl.dirs[d]; ok {
				h.Mode, h.Uid, h.Gid, h.ModTime = int64(a.mode), int(a.uid), int(a.gid), time.Unix(0, a.mtime)
			} else {
				// above this task's views: the puller creates it if missing
				// and never applies this made-up metadata
				h.Mode, h.ModTime, h.PAXRecords = 0o755, time.Unix(0, 0), paxFiller
			}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
		}
		if r.typ == typeDir {
			emitted[r.path] = true
		}
		h := &tar.Header{
			Name:    pl.title + "/" + r.path,
			Mode:    int64(r.mode),
			Uid:     int(r.uid),
			Gid:     int(r.gid),
			ModTime: time.Unix(0, r.mtime),
			Format:  tar.FormatPAX,
		}
		switch r.typ {
		case typeDir:
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		case typeSymlink:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = r.link
		case typeFifo:
			h.Typeflag = tar.TypeFifo
		case typeFile:
			switch {
			case r.linkTo() != "":
				h.Typeflag = tar.TypeLink
				h.Linkname = pl.title + "/" + r.linkTo()
			case r.hl != nil:
				h.Typeflag = tar.TypeReg
				h.Size = r.size
				h.PAXRecords = paxLinked
			default:
				h.Typeflag = tar.TypeReg
				h.Size = r.size
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", r.path, err)
		}
		if h.Typeflag == tar.TypeReg && r.size > 0 {
			f, err := openFileLent(pl.roots[r.mnt].src(r), r)
			if err != nil {
				return fmt.Errorf("read %s: %w", r.path, err)
			}
			n, err := io.CopyBuffer(tw, io.LimitReader(f, r.size), *bufp)
			f.Close()
			if err != nil {
				return fmt.Errorf("read %s: %w", r.path, err)
			}
			if n != r.size {
				return fmt.Errorf("read %s: file shrank while pushing (%d of %d bytes)", r.path, n, r.size)
			}
		}
	}
	return tw.Close()
}
