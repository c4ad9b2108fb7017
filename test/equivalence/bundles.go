package main

// Remote Tasks of a case: Tasks that the runs get from Tekton's own
// resolvers (test/cluster/up.sh deploys them), not from the case's
// namespace by name.
//
//   - A Task annotated equivalence.tekton.dev/bundle: NAME is not created in
//     the cluster: it goes, with its observer steps, into the Tekton bundle
//     NAME (an OCI image with one layer per Task, annotated
//     dev.tekton.image.apiVersion/kind/name, as docs/tekton-bundle-contracts.md
//     of Tekton's module says), pushed to the test bed's zot as
//     <prefix>/<case namespace>/bundles/NAME:v1 with a registry token of the
//     case namespace's default ServiceAccount (the token service grants a
//     namespace pull and push on its own repositories only).
//   - Any string "eq-bundle:NAME" in the case's other objects (a bundles
//     resolver's `bundle` param) becomes that bundle's reference. The
//     registry is named by zot's Service cluster IP: the bundles resolver
//     (go-containerregistry) falls back to plain HTTP only for a private
//     (RFC 1918) IP or a localhost name, and has no insecure-registry
//     setting; zot's Service name would be tried over HTTPS only.
//   - The case namespace gets a docker-registry Secret eq-registry-pull for
//     that address: user transport.TokenUsername, password a ServiceAccount
//     token of the registry audience, valid 1h (what the token service
//     takes). A ServiceAccount of the case that lists it in its
//     imagePullSecrets is what the resolver pulls as (its `serviceAccount`
//     param; k8schain).
//   - An object with a metadata.namespace of its own (a Task the cluster
//     resolver reads from another namespace) is created there, the
//     namespace too, and the namespace is deleted with the case's.
//
// After the converted run, checkSources checks that the webhook recorded
// where each remote Task came from: for a bundle, the digest pushed.

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/tekton-oci-transport/tekton-oci-transport/transport"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"sigs.k8s.io/yaml"
)

const (
	bundleAnno      = "equivalence.tekton.dev/bundle"
	bundleRefPrefix = "eq-bundle:"
	bundleTag       = "v1"
	pullSecretName  = "eq-registry-pull"
)

// remoteSources is what placeRemote did for a case.
type remoteSources struct {
	// digests: bundle reference (as substituted) -> manifest digest pushed
	digests map[string]string
	// namespaces created for objects of other namespaces
	namespaces []string
}

// placeRemote pushes the case's bundles, creates its objects of other
// namespaces, and substitutes the bundle references in run and the
// objects left, which it returns (to be created in the case's namespace).
func (c *kase) placeRemote(run obj, others []obj) ([]obj, error) {
	bundles := map[string][]obj{}
	var names []string
	var rest, foreign []obj
	for _, o := range others {
		md := m(o, "metadata")
		annos, _ := md["annotations"].(obj)
		if b := s(annos, bundleAnno); b != "" && s(o, "kind") == "Task" {
			delete(annos, bundleAnno)
			if len(annos) == 0 {
				delete(md, "annotations")
			}
			if _, ok := bundles[b]; !ok {
				names = append(names, b)
			}
			bundles[b] = append(bundles[b], o)
			continue
		}
		if ns := s(md, "namespace"); ns != "" && ns != c.ns {
			foreign = append(foreign, o)
			continue
		}
		rest = append(rest, o)
	}
	if len(bundles) == 0 && len(foreign) == 0 {
		return others, nil
	}
	c.remote = &remoteSources{digests: map[string]string{}}
	refs := map[string]string{}
	if len(bundles) > 0 {
		addr, err := serviceAddress(registryService, registryNS, registryPort)
		if err != nil {
			return nil, err
		}
		token, err := c.registryToken(time.Hour)
		if err != nil {
			return nil, err
		}
		for _, b := range names {
			repo := repoPrefix + "/" + c.ns + "/bundles/" + b
			dgst, err := pushBundle(addr, repo, bundleTag, token, bundles[b])
			if err != nil {
				return nil, fmt.Errorf("pushing bundle %s: %w", b, err)
			}
			ref := addr + "/" + repo + ":" + bundleTag
			refs[bundleRefPrefix+b] = ref
			c.remote.digests[ref] = dgst
			fmt.Printf("  bundle %s: %d Task(s) pushed as %s@%s\n", b, len(bundles[b]), ref, dgst)
		}
		if _, err := kc(nil, "-n", c.ns, "create", "secret", "docker-registry", pullSecretName, "--docker-server="+addr,
			"--docker-username="+transport.TokenUsername, "--docker-password="+token); err != nil {
			return nil, err
		}
	}
	for _, o := range append(append([]obj{run}, rest...), foreign...) {
		substituteRefs(o, refs)
	}
	for _, o := range foreign {
		ns := s(m(o, "metadata"), "namespace")
		if !slices.Contains(c.remote.namespaces, ns) {
			_, _ = kc(nil, "delete", "namespace", ns, "--ignore-not-found", "--wait=true", "--timeout=120s")
			if _, err := kc(nil, "create", "namespace", ns); err != nil {
				return nil, err
			}
			c.remote.namespaces = append(c.remote.namespaces, ns)
		}
		b, _ := json.Marshal(o)
		if _, err := kc(b, "apply", "-f", "-"); err != nil {
			return nil, err
		}
	}
	return rest, nil
}

// dropRemote deletes the namespaces placeRemote created.
func (c *kase) dropRemote() {
	if c.remote == nil {
		return
	}
	for _, ns := range c.remote.namespaces {
		_, _ = kc(nil, "delete", "namespace", ns, "--wait=false")
	}
}

// registryToken is a token of the case namespace's default ServiceAccount
// for the token service's audience (the ServiceAccount appears shortly
// after its namespace).
func (c *kase) registryToken(d time.Duration) (string, error) {
	var err error
	for range 30 {
		var out []byte
		out, err = kc(nil, "-n", c.ns, "create", "token", "default", "--audience", tokenAudience, "--duration", d.String())
		if err == nil {
			return strings.TrimSpace(string(out)), nil
		}
		time.Sleep(time.Second)
	}
	return "", err
}

// substituteRefs replaces every string value of o that is a key of refs.
func substituteRefs(o any, refs map[string]string) {
	switch v := o.(type) {
	case obj:
		for k, x := range v {
			if str, ok := x.(string); ok {
				if r, ok := refs[str]; ok {
					v[k] = r
				}
				continue
			}
			substituteRefs(x, refs)
		}
	case []any:
		for i, x := range v {
			if str, ok := x.(string); ok {
				if r, ok := refs[str]; ok {
					v[i] = r
				}
				continue
			}
			substituteRefs(x, refs)
		}
	}
}

// pushBundle pushes tasks as a Tekton bundle to repo:tag on the registry at
// addr (plain HTTP), paying for the registry token with the ServiceAccount
// token, and returns the manifest's digest.
func pushBundle(addr, repo, tag, token string, tasks []obj) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := remote.NewRepository(addr + "/" + repo)
	if err != nil {
		return "", err
	}
	r.PlainHTTP = true
	r.Client = &auth.Client{
		Client:     &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: dialServices}},
		Credential: auth.StaticCredential(addr, auth.Credential{Username: transport.TokenUsername, Password: token}),
		Cache:      auth.NewCache(),
	}
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	for _, t := range tasks {
		md := m(t, "metadata")
		delete(md, "namespace")
		y, err := yaml.Marshal(t)
		if err != nil {
			return "", err
		}
		var tb bytes.Buffer
		tw := tar.NewWriter(&tb)
		if err := tw.WriteHeader(&tar.Header{Name: s(md, "name") + ".yaml", Mode: 0o644, Size: int64(len(y)), Typeflag: tar.TypeReg}); err != nil {
			return "", err
		}
		_, _ = tw.Write(y)
		if err := tw.Close(); err != nil {
			return "", err
		}
		diffIDs = append(diffIDs, digest.FromBytes(tb.Bytes()))
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		_, _ = zw.Write(tb.Bytes())
		if err := zw.Close(); err != nil {
			return "", err
		}
		desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageLayerGzip, gz.Bytes())
		desc.Annotations = map[string]string{
			"dev.tekton.image.apiVersion": s(t, "apiVersion"),
			"dev.tekton.image.kind":       strings.ToLower(s(t, "kind")),
			"dev.tekton.image.name":       s(md, "name"),
		}
		if err := pushBlob(ctx, r, desc, gz.Bytes()); err != nil {
			return "", err
		}
		layers = append(layers, desc)
	}
	cfg, _ := json.Marshal(ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}})
	cfgDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageConfig, cfg)
	if err := pushBlob(ctx, r, cfgDesc, cfg); err != nil {
		return "", err
	}
	man, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cfgDesc, Layers: layers})
	manDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, man)
	if err := r.PushReference(ctx, manDesc, bytes.NewReader(man), tag); err != nil {
		return "", err
	}
	return manDesc.Digest.String(), nil
}

func pushBlob(ctx context.Context, r *remote.Repository, desc ocispec.Descriptor, b []byte) error {
	if ok, err := r.Blobs().Exists(ctx, desc); err == nil && ok {
		return nil
	}
	return r.Blobs().Push(ctx, desc, bytes.NewReader(b))
}

// dialServices dials a Service by its cluster IP when addr names it
// (name.namespace.svc[.cluster.local]:port: the token realm zot names),
// anything else as it is.
func dialServices(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		if parts := strings.Split(host, "."); len(parts) >= 3 && parts[2] == "svc" {
			if addr, err = serviceAddress(parts[0], parts[1], port); err != nil {
				return nil, err
			}
		}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// checkSources checks the converted run's sources annotation
// (oci-transport.tekton.dev/sources): each pipeline task of pspec whose
// taskRef names a resolver must be recorded with that resolver, and a
// bundle's with the digest pushed. It prints what it found and returns
// the number of differences.
func (c *kase) checkSources(pspec obj, rr *runResult) int {
	if c.remote == nil || rr == nil {
		return 0
	}
	var got struct {
		Tasks map[string]struct {
			Resolver string            `json:"resolver"`
			Params   map[string]string `json:"params"`
			URI      string            `json:"uri"`
			Digest   map[string]string `json:"digest"`
		} `json:"tasks"`
	}
	raw := s(m(rr.obj, "metadata", "annotations"), "oci-transport.tekton.dev/sources")
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		fmt.Printf("  DIFF sources: the converted run's annotation oci-transport.tekton.dev/sources %q: %v\n", raw, err)
		return 1
	}
	diffs := 0
	for _, sect := range []string{"tasks", "finally"} {
		for _, t := range list(pspec, sect) {
			ref := m(t, "taskRef")
			resolver := s(ref, "resolver")
			if resolver == "" {
				continue
			}
			name := s(t.(obj), "name")
			src, ok := got.Tasks[name]
			switch {
			case !ok:
				fmt.Printf("  DIFF sources: %s (resolver %s) not recorded\n", name, resolver)
				diffs++
				continue
			case src.Resolver != resolver:
				fmt.Printf("  DIFF sources: %s recorded as resolver %q, want %q\n", name, src.Resolver, resolver)
				diffs++
				continue
			}
			if resolver != "bundles" {
				// the webhook reads a cluster reference to the run's own
				// namespace from the API itself: no refSource, no URI
				fmt.Printf("  sources: %s from resolver %s: %s\n", name, resolver, cmp.Or(src.URI, "(read by the webhook from the API)"))
				continue
			}
			want := c.remote.digests[src.Params["bundle"]]
			gotDigest := ""
			if h := src.Digest["sha256"]; h != "" {
				gotDigest = "sha256:" + h
			}
			if want == "" || gotDigest != want {
				fmt.Printf("  DIFF sources: %s from bundle %s recorded with digest %q, pushed %q\n", name, src.Params["bundle"], gotDigest, want)
				diffs++
				continue
			}
			fmt.Printf("  sources: %s from resolver bundles: %s@%s\n", name, src.URI, gotDigest)
		}
	}
	return diffs
}
