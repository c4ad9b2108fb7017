package transport

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"oras.land/oras-go/v2/registry"
)

// The artifact format. A delta is an OCI image manifest (image-spec 1.1):
//
//   - artifactType ArtifactType;
//   - config: a small JSON document (ConfigMediaType) with the deleted paths,
//     the symlinks the delta writes and what the producer changed of the
//     workspace root itself (root.go);
//   - layers: tar archives (compressed with gzip, zstd, or not at all). Every
//     entry of layer i sits under a folder named by the layer's
//     org.opencontainers.image.title annotation ("ws-000", "ws-001", ...),
//     and below it paths are relative to the pipeline workspace root. gzip
//     layers also carry io.deis.oras.content.unpack=true so that the stock
//     `oras pull` unpacks each layer into its folder;
//   - annotations: task, created, file count, bytes, and the manifests the
//     producer had applied before it ran (used to tell real conflicts from
//     ordinary sequential edits).
const (
	ArtifactType    = "application/vnd.tekton-oci-transport.delta.v1"
	ConfigMediaType = "application/vnd.tekton-oci-transport.delta.config.v1+json"

	MediaTypeTar     = "application/vnd.oci.image.layer.v1.tar"
	MediaTypeTarGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeTarZstd = "application/vnd.oci.image.layer.v1.tar+zstd"

	AnnotationTitle   = "org.opencontainers.image.title"
	AnnotationCreated = "org.opencontainers.image.created"
	AnnotationUnpack  = "io.deis.oras.content.unpack"

	annotationPrefix = "oci-transport.tekton.dev/"
	AnnotationTask   = annotationPrefix + "task"
	AnnotationFiles  = annotationPrefix + "files"
	AnnotationBytes  = annotationPrefix + "bytes"
	AnnotationBase   = annotationPrefix + "base"
	// AnnotationDeletions is the number of deleted paths (the paths are in the config).
	AnnotationDeletions = annotationPrefix + "deletions"
	// AnnotationViews is a JSON list of the producer's views (subPaths
	// resolved through the workspace's symlinks): a puller skips a delta
	// none of whose views overlaps its own.
	AnnotationViews = annotationPrefix + "views"

	maxManifestBytes = 4 << 20
	maxConfigBytes   = 64 << 20
)

// deltaConfig is the config blob of a delta.
type deltaConfig struct {
	Version   int
	Deletions []string
	// Symlinks are the symlinks the delta writes (path -> target): a puller
	// resolves its subPaths through them before extracting anything, as the
	// kubelet resolves a subPath on a PVC.
	Symlinks map[string]string
	// Root is what the producer changed of the workspace root itself (its
	// root view's directory: mode, owner, mtime; root.go). A puller that
	// does not know the field ignores it and leaves its root as it was.
	Root *rootMeta
}

// deltaConfigJSON is how a deltaConfig is stored. Linux names are bytes and
// JSON strings are UTF-8 (encoding/json turns invalid bytes into U+FFFD, so
// the deletion of "caf\xe9.txt" would name another file and miss its own):
// a deletion, or a symlink whose path or target, that is not valid UTF-8
// goes base64 (standard, padded) into the raw lists, and such a config says
// version 2. A config with only UTF-8 paths is version 1, as before.
type deltaConfigJSON struct {
	Version      int               `json:"version"`
	Deletions    []string          `json:"deletions"`
	Symlinks     map[string]string `json:"symlinks,omitempty"`
	RawDeletions []string          `json:"rawDeletions,omitempty"`
	RawSymlinks  [][]string        `json:"rawSymlinks,omitempty"` // [path, target]
	Root         *rootMeta         `json:"root,omitempty"`
}

// configVersion is the newest config a puller understands; a newer one may
// say what this puller cannot apply, so it is refused, not half applied.
const configVersion = 2

func (c deltaConfig) MarshalJSON() ([]byte, error) {
	j := deltaConfigJSON{Version: 1, Deletions: []string{}}
	if !c.Root.empty() {
		j.Root = c.Root
	}
	b64 := base64.StdEncoding.EncodeToString
	for _, p := range c.Deletions {
		if utf8.ValidString(p) {
			j.Deletions = append(j.Deletions, p)
		} else {
			j.RawDeletions = append(j.RawDeletions, b64([]byte(p)))
		}
	}
	for _, p := range slices.Sorted(maps.Keys(c.Symlinks)) {
		target := c.Symlinks[p]
		if utf8.ValidString(p) && utf8.ValidString(target) {
			if j.Symlinks == nil {
				j.Symlinks = map[string]string{}
			}
			j.Symlinks[p] = target
		} else {
			j.RawSymlinks = append(j.RawSymlinks, []string{b64([]byte(p)), b64([]byte(target))})
		}
	}
	if len(j.RawDeletions) > 0 || len(j.RawSymlinks) > 0 {
		j.Version = 2
	}
	return json.Marshal(j)
}

func (c *deltaConfig) UnmarshalJSON(b []byte) error {
	var j deltaConfigJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.Version > configVersion {
		return fmt.Errorf("config version %d is newer than this step reads (%d): use the step image of the webhook that converted the run", j.Version, configVersion)
	}
	decode := func(s string) (string, error) {
		raw, err := base64.StdEncoding.DecodeString(s)
		return string(raw), err
	}
	if err := j.Root.check(); err != nil {
		return err
	}
	*c = deltaConfig{Version: j.Version, Deletions: j.Deletions, Symlinks: j.Symlinks, Root: j.Root}
	for _, s := range j.RawDeletions {
		p, err := decode(s)
		if err != nil {
			return fmt.Errorf("rawDeletions: %w", err)
		}
		c.Deletions = append(c.Deletions, p)
	}
	for _, pair := range j.RawSymlinks {
		if len(pair) != 2 {
			return fmt.Errorf("rawSymlinks: %d strings where a path and a target belong", len(pair))
		}
		p, err := decode(pair[0])
		if err != nil {
			return fmt.Errorf("rawSymlinks: %w", err)
		}
		target, err := decode(pair[1])
		if err != nil {
			return fmt.Errorf("rawSymlinks: %w", err)
		}
		if c.Symlinks == nil {
			c.Symlinks = map[string]string{}
		}
		c.Symlinks[p] = target
	}
	return nil
}

func encodeConfig(deletions []string, changed []record, root *rootMeta) ([]byte, error) {
	c := deltaConfig{Deletions: deletions, Root: root}
	for i := range changed {
		if changed[i].typ == typeSymlink {
			if c.Symlinks == nil {
				c.Symlinks = map[string]string{}
			}
			c.Symlinks[changed[i].path] = changed[i].link
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	if len(b) > maxConfigBytes {
		return nil, fmt.Errorf("delta config of %d bytes is over the %d limit (%d deletions, %d symlinks)", len(b), maxConfigBytes, len(c.Deletions), len(c.Symlinks))
	}
	return b, nil
}

// encodeViews gives the AnnotationViews value, or false when a view is not
// valid UTF-8 (a subPath resolved through a symlink whose target is bytes):
// an annotation is a JSON string, and a mangled view could look disjoint
// from a puller's and make it skip the delta, so the annotation is left out
// and every puller applies the delta (what it holds outside a puller's views
// is not extracted there anyway).
func encodeViews(ms []*mount) (string, bool) {
	views := make([]string, 0, len(ms))
	for _, m := range ms {
		if !utf8.ValidString(m.view) {
			return "", false
		}
		views = append(views, m.view)
	}
	b, _ := json.Marshal(views)
	return string(b), true
}

// PAX records of our own (VENDOR.keyword, as the PAX format asks).
var (
	// paxFiller marks a directory the push made up as the ancestor of an
	// entry above its views: its mode and times mean nothing. (A marker,
	// not mtime 0: reproducible builds set real directories to mtime 0.)
	paxFiller = map[string]string{paxFillerKey: "1"}
	// paxLinked marks a file that has other names (hard links) later in
	// the layer: a puller that does not see this name keeps its data for
	// them.
	paxLinked = map[string]string{paxLinkedKey: "1"}
)

const (
	paxFillerKey = "TEKTON-OCI-TRANSPORT.filler"
	paxLinkedKey = "TEKTON-OCI-TRANSPORT.linked"
)

// ValidTag reports whether t is a valid OCI tag, by oras-go's reference
// grammar (the distribution spec's), as the registry will judge it.
func ValidTag(t string) bool {
	return registry.Reference{Reference: t}.ValidateReferenceAsTag() == nil
}

// cleanSubPath normalises a mount's subPath: "" is the workspace root.
func cleanSubPath(s string) (string, error) {
	s = strings.Trim(s, "/")
	if s == "" || s == "." {
		return "", nil
	}
	if err := checkRelPath(s); err != nil {
		return "", usagef("subPath %q: %v", s, err)
	}
	return s, nil
}

// checkRelPath validates a slash-separated path relative to the workspace
// root: not empty, not absolute, clean, no "." or ".." components, no NUL.
func checkRelPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("empty path")
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("absolute path")
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("NUL in path")
	}
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "..":
			return fmt.Errorf("path has a .. component")
		case ".", "":
			return fmt.Errorf("path is not clean")
		}
	}
	if path.Clean(p) != p {
		return fmt.Errorf("path is not clean")
	}
	return nil
}

// layerTitle names layer i; entries of the layer live under this folder.
func layerTitle(i int) string { return fmt.Sprintf("ws-%03d", i) }

func validTitle(t string) bool {
	return t != "" && t != "." && t != ".." && len(t) <= 255 && !strings.ContainsAny(t, "/\\\x00")
}
