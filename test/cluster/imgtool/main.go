// Command imgtool wraps a directory as a one-layer container image tarball in
// the docker-archive format that `ctr images import` reads, so the test bed
// needs no registry and no image builder: only the standard library.
//
//	imgtool -o out.tar -root DIR -tag local.test/x:1 [-tag other:tag] [-user 65532] [-- entrypoint args...]
//
// With -format oci it writes an OCI image layout as a tar instead (an "OCI
// archive": oci-layout, index.json, blobs/sha256/...), its layer gzipped, one
// index entry per -tag (org.opencontainers.image.ref.name is the tag,
// io.containerd.image.name the whole name), which `ctr images import`, oras
// and skopeo read and hack/pushimages pushes (make images).
//
//	imgtool -format oci -arch arm64 -annotation org.opencontainers.image.version=v0.1.0 -o out.tar -root DIR -tag x/y:v0.1.0 -- /bin/y
//
// Files are stored as owned by root (uid/gid 0) with their modes; the layer,
// config and timestamps are deterministic, so the same directory gives the
// same image ID (and, for -format oci, the same manifest digest with the same
// Go version, whose gzip writes the layer).
package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type tags []string

func (t *tags) String() string     { return strings.Join(*t, ",") }
func (t *tags) Set(s string) error { *t = append(*t, s); return nil }

func main() {
	var (
		out, root, user, format, arch string
		repoTags, annotations         tags
	)
	flag.StringVar(&out, "o", "", "output tarball")
	flag.StringVar(&root, "root", "", "directory that becomes the image's filesystem")
	flag.StringVar(&user, "user", "", "image config User (empty: root)")
	flag.StringVar(&format, "format", "docker", "docker (docker-archive) or oci (a tar of an OCI image layout)")
	flag.StringVar(&arch, "arch", "amd64", "image config architecture")
	flag.Var(&repoTags, "tag", "image name (repeatable)")
	flag.Var(&annotations, "annotation", "key=value of the OCI manifest's annotations (repeatable; -format oci)")
	flag.Parse()
	if out == "" || root == "" || len(repoTags) == 0 || (format != "docker" && format != "oci") {
		log.Fatal("usage: imgtool [-format docker|oci] [-arch ARCH] [-annotation K=V] -o out.tar -root DIR -tag NAME [-tag NAME] [-user UID] [-- entrypoint...]")
	}
	var err error
	if format == "oci" {
		err = buildOCI(out, root, user, arch, repoTags, annotations, flag.Args())
	} else {
		err = build(out, root, user, arch, repoTags, flag.Args())
	}
	if err != nil {
		log.Fatal(err)
	}
}

// imageConfig is the image's config blob (the same for both formats).
func imageConfig(user, arch, diffID string, entrypoint []string) ([]byte, error) {
	return json.Marshal(map[string]any{
		"architecture": arch,
		"os":           "linux",
		"created":      time.Unix(0, 0).UTC().Format(time.RFC3339),
		"config": map[string]any{
			"Env":        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			"Entrypoint": entrypoint,
			"User":       user,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
}

func build(out, root, user, arch string, repoTags, entrypoint []string) error {
	layer, err := os.CreateTemp(filepath.Dir(out), ".layer-*")
	if err != nil {
		return err
	}
	defer os.Remove(layer.Name())
	defer layer.Close()
	h := sha256.New()
	if err := writeLayer(io.MultiWriter(layer, h), root); err != nil {
		return err
	}
	diffID := "sha256:" + hex.EncodeToString(h.Sum(nil))

	cfg, err := imageConfig(user, arch, diffID, entrypoint)
	if err != nil {
		return err
	}
	cfgSum := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	layerName := strings.TrimPrefix(diffID, "sha256:") + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": cfgName, "RepoTags": repoTags, "Layers": []string{layerName},
	}})
	if err != nil {
		return err
	}

	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	if err := add(cfgName, int64(len(cfg)), strings.NewReader(string(cfg))); err != nil {
		return err
	}
	size, err := layer.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	if _, err := layer.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := add(layerName, size, layer); err != nil {
		return err
	}
	if err := add("manifest.json", int64(len(manifest)), strings.NewReader(string(manifest))); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

// buildOCI writes out as a tar of an OCI image layout: the gzipped layer, the
// config and the manifest as blobs, index.json naming the manifest once per
// tag.
func buildOCI(out, root, user, arch string, repoTags, annotations, entrypoint []string) error {
	layer, err := os.CreateTemp(filepath.Dir(out), ".layer-*")
	if err != nil {
		return err
	}
	defer os.Remove(layer.Name())
	defer layer.Close()
	diff, comp := sha256.New(), sha256.New()
	zw, err := gzip.NewWriterLevel(io.MultiWriter(layer, comp), gzip.BestCompression)
	if err != nil {
		return err
	}
	if err := writeLayer(io.MultiWriter(zw, diff), root); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	layerSize, err := layer.Seek(0, io.SeekCurrent)
	if err != nil {
		return err
	}
	cfg, err := imageConfig(user, arch, "sha256:"+hex.EncodeToString(diff.Sum(nil)), entrypoint)
	if err != nil {
		return err
	}
	type descriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }
	manifestAnnotations := map[string]string{}
	for _, a := range annotations {
		k, v, ok := strings.Cut(a, "=")
		if !ok || k == "" {
			return fmt.Errorf("-annotation %q: want key=value", a)
		}
		manifestAnnotations[k] = v
	}
	if len(manifestAnnotations) == 0 {
		manifestAnnotations = nil
	}
	layerDesc := descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: "sha256:" + hex.EncodeToString(comp.Sum(nil)), Size: layerSize}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: sum(cfg), Size: int64(len(cfg))},
		"layers":        []descriptor{layerDesc},
		"annotations":   manifestAnnotations,
	})
	if err != nil {
		return err
	}
	var entries []descriptor
	for _, t := range repoTags {
		// the tag is what follows the last ':' after the last '/'
		tag := t[strings.LastIndex(t, "/")+1:]
		if i := strings.LastIndex(tag, ":"); i >= 0 {
			tag = tag[i+1:]
		} else {
			tag = "latest"
		}
		entries = append(entries, descriptor{
			MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: sum(manifest), Size: int64(len(manifest)),
			Annotations: map[string]string{"org.opencontainers.image.ref.name": tag, "io.containerd.image.name": t},
		})
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     entries,
	})
	if err != nil {
		return err
	}

	f, err := os.Create(out + ".tmp")
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	epoch := time.Unix(0, 0)
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: epoch})
	}
	add := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg, ModTime: epoch}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	blob := func(d string) string { return "blobs/sha256/" + strings.TrimPrefix(d, "sha256:") }
	layout := `{"imageLayoutVersion":"1.0.0"}`
	if err := add("oci-layout", int64(len(layout)), strings.NewReader(layout)); err != nil {
		return err
	}
	if err := dir("blobs/"); err != nil {
		return err
	}
	if err := dir("blobs/sha256/"); err != nil {
		return err
	}
	if _, err := layer.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := add(blob(layerDesc.Digest), layerSize, layer); err != nil {
		return err
	}
	if err := add(blob(sum(cfg)), int64(len(cfg)), strings.NewReader(string(cfg))); err != nil {
		return err
	}
	if err := add(blob(sum(manifest)), int64(len(manifest)), strings.NewReader(string(manifest))); err != nil {
		return err
	}
	if err := add("index.json", int64(len(index)), strings.NewReader(string(index))); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(out+".tmp", out)
}

// writeLayer writes root's tree as an uncompressed tar, in sorted order.
func writeLayer(w io.Writer, root string) error {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	tw := tar.NewWriter(w)
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		hdr.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return err
			}
		}
	}
	return tw.Close()
}
