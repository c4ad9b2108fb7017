// Package webhooktest builds the admission handler the golden tests run
// against a fake cluster, and reads and answers their admission requests.
// The webhook's own golden tests and the webhook/convert parity test
// (cmd/webhook) share it, so both exercise the same handler.
package webhooktest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/decode"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/resolve"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/server"
	resolutionv1beta1 "github.com/tektoncd/pipeline/pkg/apis/resolution/v1beta1"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"
)

// Options every golden case converts with.
var Options = transform.Options{
	Registry:         "registry.test:5000",
	RepositoryPrefix: "tekton-oci-transport",
	PlainHTTP:        true,
	StepImage:        "oci-transport-step:test",
	StepCommand:      []string{"/usr/local/bin/oci-transport-step"},
}

// DefaultNamespace is where a cluster object without a namespace is put.
const DefaultNamespace = "team-a"

// Config is a case's config.yaml (optional).
type Config struct {
	Strict            bool   `json:"strict"`
	ResolutionTimeout string `json:"resolutionTimeout"`
	// Mode is the handler's --mode (convert when empty).
	Mode string `json:"mode"`
}

// ReadConfig reads path; a missing file is the zero Config.
func ReadConfig(path string) (Config, error) {
	var cfg Config
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return cfg, nil
	}
	if err != nil {
		return cfg, err
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("decoding %s: %w", path, err)
	}
	return cfg, nil
}

// Timeout is the resolution deadline: the case's, or 2s.
func (c Config) Timeout() time.Duration {
	if d, err := time.ParseDuration(c.ResolutionTimeout); err == nil {
		return d
	}
	return 2 * time.Second
}

// ReadReview reads an AdmissionReview written as YAML.
func ReadReview(path string) (admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	data, err := os.ReadFile(path)
	if err != nil {
		return review, err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return review, fmt.Errorf("%s: %w", path, err)
	}
	if err := json.Unmarshal(js, &review); err != nil {
		return review, fmt.Errorf("%s: %w", path, err)
	}
	if review.Request == nil {
		return review, fmt.Errorf("%s: no request", path)
	}
	return review, nil
}

// Client is a fake cluster that counts the ResolutionRequests created
// through it (deleted ones included: the fake client keeps no history).
type Client struct {
	client.Client
	created atomic.Int32
}

// Created is how many ResolutionRequests were created.
func (c *Client) Created() int { return int(c.created.Load()) }

func (c *Client) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	if _, ok := obj.(*resolutionv1beta1.ResolutionRequest); ok {
		c.created.Add(1)
	}
	return c.Client.Create(ctx, obj, opts...)
}

// ClusterFile is Cluster of the documents of a multi-document YAML file; a
// missing file is an empty cluster.
func ClusterFile(path string) (*Client, error) {
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	return Cluster(SplitDocuments(data)...)
}

// SplitDocuments splits a multi-document YAML stream, dropping empty
// documents.
func SplitDocuments(data []byte) [][]byte {
	var docs [][]byte
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) > 0 {
			docs = append(docs, doc)
		}
	}
	return docs
}

// Cluster is ClusterIn(DefaultNamespace, docs...).
func Cluster(docs ...[]byte) (*Client, error) {
	return ClusterIn(DefaultNamespace, docs...)
}

// ClusterIn is a fake cluster holding docs (Namespaces, Tekton Tasks and
// Pipelines in any version); an object without a namespace is put in
// namespace, as `kubectl apply -n namespace` would. A second object of the
// same name is ignored: the parity test feeds the cluster every supplied
// file, which may repeat one.
func ClusterIn(namespace string, docs ...[]byte) (*Client, error) {
	scheme, err := server.Scheme()
	if err != nil {
		return nil, err
	}
	c := &Client{Client: fake.NewClientBuilder().WithScheme(scheme).WithStatusSubresource(&resolutionv1beta1.ResolutionRequest{}).Build()}
	for _, doc := range docs {
		obj, err := clusterObject(doc, namespace)
		if err != nil {
			return nil, err
		}
		if err := c.Client.Create(context.Background(), obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("adding %s %s to the fake cluster: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		}
	}
	return c, nil
}

func clusterObject(doc []byte, namespace string) (client.Object, error) {
	tm, err := decode.TypeMeta(doc)
	if err != nil {
		return nil, err
	}
	if tm.Kind == "Namespace" {
		ns := &corev1.Namespace{}
		return ns, yaml.Unmarshal(doc, ns)
	}
	obj, err := decode.Object(doc)
	if err != nil {
		return nil, err
	}
	co, ok := obj.(client.Object)
	if !ok {
		return nil, fmt.Errorf("%T is not a cluster object", obj)
	}
	if co.GetNamespace() == "" {
		co.SetNamespace(namespace)
	}
	return co, nil
}

// Handler is the handler of the golden cases: c is the API (cache, client
// and live reads alike), resolving within timeout.
func Handler(c client.Client, strict bool, timeout time.Duration, log logr.Logger) *webhook.Handler {
	return &webhook.Handler{
		Strict:     strict,
		Options:    Options,
		Resolver:   &resolve.Resolver{Cache: c, Client: c, Live: c, Timeout: timeout, Log: log},
		Namespaces: webhook.CachedNamespaces{Reader: c},
		Log:        log,
	}
}

// Apply applies resp's JSON patch to raw, as the API server does; raw is
// returned as it is when there is no patch.
func Apply(raw []byte, resp admission.Response) ([]byte, error) {
	if len(resp.Patches) == 0 {
		return raw, nil
	}
	ops, err := json.Marshal(resp.Patches)
	if err != nil {
		return nil, err
	}
	p, err := jsonpatchapply.DecodePatch(ops)
	if err != nil {
		return nil, err
	}
	out, err := p.Apply(raw)
	if err != nil {
		return nil, fmt.Errorf("the patch does not apply to the raw request object: %w", err)
	}
	return out, nil
}
