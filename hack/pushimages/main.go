// Command pushimages pushes the OCI archives `make images` wrote (tars of an
// OCI image layout, see test/cluster/imgtool -format oci) to a registry with
// oras-go, and prints each image's digest and the `helm install` line that
// installs the chart from exactly those images (make push-images).
//
//	pushimages -repo registry.example.com/team [-tag v0.1.0] [-plain-http] [-set-file FILE] \
//	  webhook=bin/images/webhook.tar oci-transport-step=bin/images/oci-transport-step.tar
//
// Each NAME=ARCHIVE goes to <repo>/<NAME>:<tag> (the archive's only manifest,
// whatever tag it was written with). Credentials come from the Docker config
// ($DOCKER_CONFIG/config.json or ~/.docker/config.json, credential helpers
// included) when it has some for the registry; none is needed otherwise.
// -plain-http is for a registry without TLS (a test or in-cluster one).
// -set-file writes the four `--set` flags, one per line, for scripts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/registry"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/credentials"
	"oras.land/oras-go/v2/registry/remote/retry"
)

// chartValues maps an image name to the chart values that select it.
var chartValues = map[string]string{
	"webhook":            "webhook.image",
	"oci-transport-step": "steps.image",
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("pushimages: ")
	repo := flag.String("repo", "", "registry/path the images go under (IMAGE_REPO), e.g. ghcr.io/me/tekton-oci-transport")
	tag := flag.String("tag", "", "tag to push (default: each archive's own)")
	plainHTTP := flag.Bool("plain-http", false, "talk to the registry over plain HTTP (no TLS)")
	setFile := flag.String("set-file", "", "also write the helm --set flags to this file, one per line")
	flag.Parse()
	if *repo == "" || flag.NArg() == 0 {
		log.Fatal("usage: pushimages -repo REGISTRY/PATH [-tag TAG] [-plain-http] [-set-file FILE] NAME=ARCHIVE...")
	}
	*repo = strings.TrimSuffix(*repo, "/")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	var sets []string
	for _, arg := range flag.Args() {
		name, archive, ok := strings.Cut(arg, "=")
		if !ok {
			log.Fatalf("%q: want NAME=ARCHIVE", arg)
		}
		ref := *repo + "/" + name
		desc, pushedTag, err := push(ctx, archive, ref, *tag, *plainHTTP)
		if errors.Is(err, auth.ErrBasicCredentialNotFound) {
			log.Fatalf("%s: %v (the registry wants credentials and the Docker config has none for it: docker login or oras login first)", ref, err)
		}
		if err != nil {
			log.Fatalf("%s: %v", ref, err)
		}
		fmt.Printf("pushed %s:%s@%s\n", ref, pushedTag, desc.Digest)
		if v, ok := chartValues[name]; ok {
			sets = append(sets, fmt.Sprintf("--set %s.repository=%s", v, ref), fmt.Sprintf("--set %s.digest=%s", v, desc.Digest))
		}
	}
	if len(sets) > 0 {
		fmt.Printf("\nInstall the chart from these images (by digest):\n\n")
		fmt.Printf("helm install tekton-oci-transport charts/tekton-oci-transport \\\n  --namespace tekton-oci-transport --create-namespace \\\n  %s\n", strings.Join(sets, " \\\n  "))
		if *setFile != "" {
			var b strings.Builder
			for _, s := range sets {
				b.WriteString(s + "\n")
			}
			if err := os.WriteFile(*setFile, []byte(b.String()), 0o644); err != nil {
				log.Fatal(err)
			}
		}
	}
}

// push copies the archive's only manifest (and its blobs) to ref:tag and
// checks that the registry resolves the tag to the same digest.
func push(ctx context.Context, archive, ref, tag string, plainHTTP bool) (ocispec.Descriptor, string, error) {
	src, err := oci.NewFromTar(ctx, archive)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("%s: %w", archive, err)
	}
	var srcTags []string
	if err := src.Tags(ctx, "", func(t []string) error { srcTags = append(srcTags, t...); return nil }); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if len(srcTags) == 0 {
		return ocispec.Descriptor{}, "", fmt.Errorf("%s: no tagged manifest in the archive", archive)
	}
	want, err := src.Resolve(ctx, srcTags[0])
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	for _, t := range srcTags[1:] {
		if d, err := src.Resolve(ctx, t); err != nil || d.Digest != want.Digest {
			return ocispec.Descriptor{}, "", fmt.Errorf("%s: holds more than one manifest (%s and %s)", archive, srcTags[0], t)
		}
	}
	if tag == "" {
		tag = srcTags[0]
	}
	if _, err := registry.ParseReference(ref + ":" + tag); err != nil {
		return ocispec.Descriptor{}, "", err
	}

	dst, err := remote.NewRepository(ref)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	dst.PlainHTTP = plainHTTP
	client := &auth.Client{Client: retry.DefaultClient, Cache: auth.NewCache()}
	client.SetUserAgent("tekton-oci-transport-pushimages")
	if store, err := credentials.NewStoreFromDocker(credentials.StoreOptions{}); err == nil {
		client.Credential = credentials.Credential(store)
	} else {
		fmt.Fprintf(os.Stderr, "pushimages: no Docker config credentials (%v); pushing anonymously\n", err)
	}
	dst.Client = client

	opts := oras.DefaultCopyOptions
	opts.Concurrency = 4
	desc, err := oras.Copy(ctx, src, srcTags[0], dst, tag, opts)
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if desc.Digest != want.Digest {
		return ocispec.Descriptor{}, "", fmt.Errorf("copied %s, the archive holds %s", desc.Digest, want.Digest)
	}
	got, err := dst.Resolve(ctx, tag)
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("resolving the pushed tag: %w", err)
	}
	if got.Digest != want.Digest {
		return ocispec.Descriptor{}, "", fmt.Errorf("the registry resolves %s to %s, pushed %s", tag, got.Digest, want.Digest)
	}
	return want, tag, nil
}
