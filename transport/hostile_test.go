package transport

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/require"
)

type tarEntry struct {
	name, link, body string
	typ              byte
	mode             int64
}

func buildTar(t testing.TB, entries ...tarEntry) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: mode, Size: int64(len(e.body))}
		if e.typ == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		require.NoError(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write([]byte(e.body))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

// extractInto extracts an archive into <parent>/mount and returns parent.
func extractInto(t testing.TB, data []byte, limits Limits, sub string) (string, error) {
	parent := t.TempDir()
	ms, err := prepareMounts([]Mount{{Dir: filepath.Join(parent, "mount"), SubPath: sub}})
	require.NoError(t, err)
	ex, err := newExtractor(ms, limits)
	require.NoError(t, err)
	defer ex.close()
	err = ex.extractTar(bytes.NewReader(data), "ws-000", nil)
	if err == nil {
		err = ex.finish()
	}
	return parent, err
}

// outside lists what exists in parent apart from the mount.
func outside(t testing.TB, parent string) []string {
	ents, err := os.ReadDir(parent)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		if e.Name() != "mount" {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestHostileArchives(t *testing.T) {
	cases := []struct {
		name    string
		entries []tarEntry
		limits  Limits
		entry   string // the refused entry named in the error
	}{
		{"dotdot", []tarEntry{{name: "ws-000/../evil", body: "x"}}, Limits{}, "ws-000/../evil"},
		{"dotdot deep", []tarEntry{{name: "ws-000/a/../../evil", body: "x"}}, Limits{}, "ws-000/a/../../evil"},
		{"absolute", []tarEntry{{name: "/evil", body: "x"}}, Limits{}, "/evil"},
		{"absolute under title", []tarEntry{{name: "ws-000//evil", body: "x"}}, Limits{}, "ws-000//evil"},
		{"outside title", []tarEntry{{name: "other/evil", body: "x"}}, Limits{}, "other/evil"},
		{"through symlink", []tarEntry{
			{name: "ws-000/real/", typ: tar.TypeDir},
			{name: "ws-000/l", link: "real", typ: tar.TypeSymlink},
			{name: "ws-000/l/x", body: "x"}}, Limits{}, "l/x"},
		{"through an absolute symlink", []tarEntry{
			{name: "ws-000/l", link: "/etc", typ: tar.TypeSymlink},
			{name: "ws-000/l/passwd", body: "x"}}, Limits{}, "l/passwd"},
		{"through a climbing symlink", []tarEntry{
			{name: "ws-000/a/", typ: tar.TypeDir},
			{name: "ws-000/a/up", link: "../..", typ: tar.TypeSymlink},
			{name: "ws-000/a/up/evil", body: "x"}}, Limits{}, "a/up/evil"},
		{"dir through a symlink", []tarEntry{
			{name: "ws-000/l", link: "/tmp", typ: tar.TypeSymlink},
			{name: "ws-000/l/d/", typ: tar.TypeDir}}, Limits{}, "l/d"},
		{"symlink with an empty target", []tarEntry{{name: "ws-000/l", typ: tar.TypeSymlink}}, Limits{}, "l"},
		{"char device", []tarEntry{{name: "ws-000/dev", typ: tar.TypeChar}}, Limits{}, "dev"},
		{"block device", []tarEntry{{name: "ws-000/blk", typ: tar.TypeBlock}}, Limits{}, "blk"},
		{"hard link outside", []tarEntry{{name: "ws-000/h", link: "/etc/passwd", typ: tar.TypeLink}}, Limits{}, "h"},
		{"hard link not in archive", []tarEntry{{name: "ws-000/h", link: "ws-000/nothere", typ: tar.TypeLink}}, Limits{}, "h"},
		{"too many entries", []tarEntry{{name: "ws-000/1"}, {name: "ws-000/2"}, {name: "ws-000/3"}}, Limits{MaxEntries: 2}, "ws-000/3"},
		{"too many bytes", []tarEntry{{name: "ws-000/1", body: "12345"}, {name: "ws-000/2", body: "678901"}}, Limits{MaxBytes: 10}, "2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent, err := extractInto(t, buildTar(t, c.entries...), c.limits, "")
			require.Error(t, err)
			require.Equal(t, ExitRefused, ExitCode(err), err.Error())
			require.Contains(t, err.Error(), `"`+c.entry+`"`)
			require.Empty(t, outside(t, parent), "nothing written outside the mount")
		})
	}
}

func TestHardLinkInsideArchive(t *testing.T) {
	parent, err := extractInto(t, buildTar(t,
		tarEntry{name: "ws-000/f", body: "data"},
		tarEntry{name: "ws-000/h", link: "ws-000/f", typ: tar.TypeLink}), Limits{}, "")
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(parent, "mount/h"))
	require.NoError(t, err)
	require.Equal(t, "data", string(b))
}

// Symlinks are stored as they were, whatever they point at (a virtualenv's
// bin/python -> /usr/bin/python3, a link out of the view to elsewhere in
// the workspace, a dangling link): the extractor never follows one, so
// nothing it writes later can go through them.
func TestSymlinksStoredVerbatimNeverFollowed(t *testing.T) {
	parent := t.TempDir()
	victim := filepath.Join(parent, "victim")
	require.NoError(t, os.Mkdir(victim, 0o755))
	ms, err := prepareMounts([]Mount{{Dir: filepath.Join(parent, "mount"), SubPath: "git"}})
	require.NoError(t, err)
	ex, err := newExtractor(ms, Limits{})
	require.NoError(t, err)
	defer ex.close()
	links := map[string]string{
		"git/venv/bin/python": "/usr/bin/python3",
		"git/pkg/LICENSE":     "../../LICENSE", // out of the git view, inside the workspace
		"git/dangling":        "nowhere",
		"git/out":             victim, // absolute, to a real directory outside the mount
		"git/up":              "../../..",
	}
	var entries []tarEntry
	for p, target := range links {
		entries = append(entries, tarEntry{name: "ws-000/" + p, link: target, typ: tar.TypeSymlink})
	}
	require.NoError(t, ex.extractTar(bytes.NewReader(buildTar(t, entries...)), "ws-000", nil))
	for p, target := range links {
		got, err := os.Readlink(filepath.Join(parent, "mount", p[len("git/"):]))
		require.NoError(t, err, p)
		require.Equal(t, target, got, p)
	}
	// a later layer writes through none of them: files at their names
	// replace the links, paths below them are refused
	for _, p := range []string{"git/out", "git/venv/bin/python"} {
		require.NoError(t, ex.extractTar(bytes.NewReader(buildTar(t, tarEntry{name: "ws-000/" + p, body: "file"})), "ws-000", nil))
		fi, err := os.Lstat(filepath.Join(parent, "mount", p[len("git/"):]))
		require.NoError(t, err)
		require.True(t, fi.Mode().IsRegular(), p)
	}
	for _, p := range []string{"git/up/x", "git/pkg/LICENSE/x", "git/dangling/x"} {
		err := ex.extractTar(bytes.NewReader(buildTar(t, tarEntry{name: "ws-000/" + p, body: "evil"})), "ws-000", nil)
		require.Equal(t, ExitRefused, ExitCode(err), p)
	}
	require.NoError(t, ex.finish())
	ents, err := os.ReadDir(victim)
	require.NoError(t, err)
	require.Empty(t, ents, "nothing written through a symlink")
	require.Equal(t, []string{"victim"}, outside(t, parent))
}

// pushRaw pushes a crafted single-layer delta (hostile content through the
// whole pull path).
func pushRaw(t *testing.T, e *env, tag string, layer []byte, mediaType string) {
	cfg, err := encodeConfig(nil, nil, nil)
	require.NoError(t, err)
	pushCrafted(t, e, tag, cfg, layer, mediaType)
}

// pushCrafted pushes a delta made of this config and one layer, as given.
func pushCrafted(t *testing.T, e *env, tag string, cfg, layer []byte, mediaType string) {
	ctx := context.Background()
	o := e.reg.opts(t, e.repo)
	require.NoError(t, o.setDefaults())
	c, err := newClient(&o)
	require.NoError(t, err)
	ld := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(layer), Size: int64(len(layer)),
		Annotations: map[string]string{AnnotationTitle: "ws-000"}}
	_, err = c.pushBlob(ctx, ld, func() io.Reader { return bytes.NewReader(layer) })
	require.NoError(t, err)
	cd := ocispec.Descriptor{MediaType: ConfigMediaType, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))}
	_, err = c.pushBlob(ctx, cd, func() io.Reader { return bytes.NewReader(cfg) })
	require.NoError(t, err)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		ArtifactType: ArtifactType, Config: cd, Layers: []ocispec.Descriptor{ld}}
	mb, err := jsonMarshal(m)
	require.NoError(t, err)
	md := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb))}
	require.NoError(t, c.repo.Manifests().PushReference(ctx, md, bytes.NewReader(mb), tag))
}

func fetchManifestForTest(t *testing.T, e *env, tag string) *ocispec.Manifest {
	o := e.reg.opts(t, e.repo)
	require.NoError(t, o.setDefaults())
	c, err := newClient(&o)
	require.NoError(t, err)
	_, m, err := c.fetchManifest(context.Background(), tag)
	require.NoError(t, err)
	return m
}

func TestHostileArtifactThroughRegistry(t *testing.T) {
	e := newEnv(t)
	pushRaw(t, e, "evil", buildTar(t, tarEntry{name: "ws-000/../../escape", body: "pwned"}), MediaTypeTar)
	parent := t.TempDir()
	_, err := Pull(context.Background(), PullOptions{Options: e.reg.opts(t, e.repo), From: []string{"evil"},
		Mounts: []Mount{{Dir: filepath.Join(parent, "mount")}}, StateDir: t.TempDir()})
	require.Error(t, err)
	require.Equal(t, ExitRefused, ExitCode(err))
	require.Contains(t, err.Error(), "../../escape")
	require.Empty(t, outside(t, parent))

	// a corrupt (but correctly digested) gzip layer is refused too
	pushRaw(t, e, "corrupt", []byte("not gzip at all"), MediaTypeTarGzip)
	_, err = Pull(context.Background(), PullOptions{Options: e.reg.opts(t, e.repo), From: []string{"corrupt"},
		Mounts: []Mount{{Dir: t.TempDir()}}, StateDir: t.TempDir()})
	require.Equal(t, ExitRefused, ExitCode(err), err)
}

// A later delta replaces whatever type an earlier one left at a path
// (parallel branches: the later one wins), through a symlink never.
func TestLaterDeltaReplacesTypes(t *testing.T) {
	parent := t.TempDir()
	ms, err := prepareMounts([]Mount{{Dir: filepath.Join(parent, "mount")}})
	require.NoError(t, err)
	ex, err := newExtractor(ms, Limits{})
	require.NoError(t, err)
	defer ex.close()
	apply := func(entries ...tarEntry) {
		t.Helper()
		require.NoError(t, ex.extractTar(bytes.NewReader(buildTar(t, entries...)), "ws-000", nil))
	}
	apply(tarEntry{name: "ws-000/target/", typ: tar.TypeDir}, tarEntry{name: "ws-000/a", link: "target", typ: tar.TypeSymlink},
		tarEntry{name: "ws-000/d/", typ: tar.TypeDir}, tarEntry{name: "ws-000/d/inner", body: "x"},
		tarEntry{name: "ws-000/f", body: "file"})
	// symlink -> dir with a file, dir -> symlink, file -> dir
	apply(tarEntry{name: "ws-000/a/", typ: tar.TypeDir}, tarEntry{name: "ws-000/a/new", body: "in a real dir"},
		tarEntry{name: "ws-000/d", link: "target", typ: tar.TypeSymlink},
		tarEntry{name: "ws-000/f/", typ: tar.TypeDir}, tarEntry{name: "ws-000/f/g", body: "g"})
	require.NoError(t, ex.finish())
	m := filepath.Join(parent, "mount")
	fi, err := os.Lstat(filepath.Join(m, "a"))
	require.NoError(t, err)
	require.True(t, fi.IsDir())
	entries, err := os.ReadDir(filepath.Join(m, "target"))
	require.NoError(t, err)
	require.Empty(t, entries, "nothing was written through the old symlink")
	l, err := os.Readlink(filepath.Join(m, "d"))
	require.NoError(t, err)
	require.Equal(t, "target", l)
	b, err := os.ReadFile(filepath.Join(m, "f/g"))
	require.NoError(t, err)
	require.Equal(t, "g", string(b))
}
