package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/golden"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cert-manager/cert-manager/pkg/apis/certmanager"
	"github.com/stretchr/testify/require"
	yamlv3 "go.yaml.in/yaml/v3"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func TestLint(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			out, err := helm(t, "lint", "--strict", chartDir, "--namespace", v.namespace,
				"-f", filepath.Join("testdata", "values", v.name+".yaml"))
			require.NoError(t, err, out)
		})
	}
}

// TestGolden renders every variant (hooks included) and compares it with
// testdata/golden: a change to the chart shows up as a reviewable diff.
// chartHint says how to rewrite the chart's golden files.
const chartHint = "`make manifests` or `go test ./test/chart -update`"

func TestGolden(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			golden.Check(t, filepath.Join("testdata", "golden", v.name+".yaml"), []byte(render(t, v)), chartHint)
		})
	}
}

// TestSchemaRejects: values.schema.json refuses wrong types, unknown keys
// and values out of range; the templates refuse combinations that cannot work.
func TestSchemaRejects(t *testing.T) {
	for name, tc := range map[string]struct {
		set  []string
		want string
	}{
		"wrong type":                        {[]string{"--set", "webhook.replicas=two"}, "replicas"},
		"unknown top-level key":             {[]string{"--set", "replicaCount=2"}, "replicaCount"},
		"unknown nested key":                {[]string{"--set", "zot.retention.repoNames[0]=x"}, "repoNames"},
		"bad enum":                          {[]string{"--set", "webhook.failurePolicy=Sometimes"}, "failurePolicy"},
		"timeout over the limit":            {[]string{"--set", "webhook.resolutionTimeoutSeconds=29"}, "resolutionTimeoutSeconds"},
		"pickup after the deadline":         {[]string{"--set", "webhook.resolutionPickupTimeoutSeconds=9"}, "resolutionPickupTimeoutSeconds must be at most"},
		"bad duration":                      {[]string{"--set", "zot.readTimeout=30 minutes"}, "readTimeout"},
		"no registry":                       {[]string{"--set", "zot.enabled=false"}, "registry.address is required"},
		"auth without htpasswd":             {[]string{"--set", "registry.auth.mode=htpasswd", "--set", "registry.auth.dockerConfigSecret=d"}, "htpasswdSecret is required"},
		"htpasswd test pod without a login": {[]string{"--set", "registry.auth.mode=htpasswd", "--set", "registry.auth.htpasswdSecret=h"}, "dockerConfigSecret is required"},
		"the old auth switch":               {[]string{"--set", "registry.auth.enabled=true"}, "enabled"},
		"bad auth mode":                     {[]string{"--set", "registry.auth.mode=basic"}, "mode"},
		"token port out of range":           {[]string{"--set", "registry.auth.token.port=70000"}, "port"},
		"token port taken":                  {[]string{"--set", "registry.auth.token.port=8081"}, "registry.auth.token.port 8081 is already a webhook port"},
		"token ttl not a duration":          {[]string{"--set", "registry.auth.token.ttl=5 minutes"}, "ttl"},
		"empty token audience":              {[]string{"--set", "registry.auth.token.audience="}, "audience"},
		"signing secret not a name":         {[]string{"--set", "registry.auth.token.signingSecret=Key_1"}, "signingSecret"},
		"bad results budget":                {[]string{"--set", "steps.resultsBudget=deny"}, "resultsBudget"},
		"zot replicas without s3":           {[]string{"--set", "zot.replicas=2"}, "more than one zot pod needs zot.storage.type s3"},
		"zot replicas on a pvc":             {[]string{"--set", "zot.replicas=3", "--set", "zot.storage.type=pvc"}, "zot.replicas is 3 but zot.storage.type is pvc"},
		"zot replicas zero":                 {[]string{"--set", "zot.replicas=0"}, "replicas"},
		"cluster hashKey not 16 characters": {[]string{"--set", "zot.cluster.hashKey=short"}, "hashKey"},
	} {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"template", "r", chartDir}, tc.set...)
			out, err := helm(t, args...)
			require.Error(t, err, "rendered:\n%s", out)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// zotConfig mirrors the keys of zot's configuration (zotregistry.dev,
// pkg/api/config) that the chart uses. Decoding with DisallowUnknownFields
// fails on any key zot does not know under these names, e.g. `repoNames`
// instead of `repositories`, the way zot's own strict loader would.
type zotConfig struct {
	DistSpecVersion string      `json:"distSpecVersion"`
	Storage         zotStorage  `json:"storage"`
	HTTP            zotHTTP     `json:"http"`
	Log             zotLog      `json:"log"`
	Cluster         *zotCluster `json:"cluster,omitempty"`
}

// zotCluster is zot's scale-out cluster (pkg/api/config ClusterConfig).
type zotCluster struct {
	Members []string `json:"members"`
	HashKey string   `json:"hashKey"`
}

type zotStorage struct {
	RootDirectory string         `json:"rootDirectory"`
	Dedupe        bool           `json:"dedupe"`
	GC            *bool          `json:"gc"`
	GCDelay       string         `json:"gcDelay"`
	GCInterval    string         `json:"gcInterval"`
	Retention     zotRetention   `json:"retention"`
	StorageDriver map[string]any `json:"storageDriver,omitempty"`
	RemoteCache   *bool          `json:"remoteCache,omitempty"`
}

type zotRetention struct {
	DryRun   bool              `json:"dryRun"`
	Delay    string            `json:"delay"`
	Policies []zotRetainPolicy `json:"policies"`
}

type zotRetainPolicy struct {
	Repositories    []string      `json:"repositories"`
	DeleteReferrers bool          `json:"deleteReferrers"`
	DeleteUntagged  *bool         `json:"deleteUntagged"`
	KeepTags        []zotKeepTags `json:"keepTags"`
}

type zotKeepTags struct {
	Patterns                []string `json:"patterns"`
	PushedWithin            *string  `json:"pushedWithin,omitempty"`
	PulledWithin            *string  `json:"pulledWithin,omitempty"`
	MostRecentlyPushedCount int      `json:"mostRecentlyPushedCount,omitempty"`
	MostRecentlyPulledCount int      `json:"mostRecentlyPulledCount,omitempty"`
}

type zotHTTP struct {
	Address      string   `json:"address"`
	Port         string   `json:"port"`
	ReadTimeout  string   `json:"readTimeout"`
	WriteTimeout string   `json:"writeTimeout"`
	Auth         *zotAuth `json:"auth,omitempty"`
}

type zotAuth struct {
	HTPasswd *struct {
		Path string `json:"path"`
	} `json:"htpasswd,omitempty"`
	Bearer *struct {
		Realm   string `json:"realm"`
		Service string `json:"service"`
		Cert    string `json:"cert"`
	} `json:"bearer,omitempty"`
}

type zotLog struct {
	Level string `json:"level"`
}

func duration(t *testing.T, what, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	require.NoError(t, err, what)
	return d
}

// TestZotConfig checks the rendered zot configuration against zot's keys and
// the settings this job needs.
func TestZotConfig(t *testing.T) {
	for _, v := range variants {
		if !v.zot {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			objs := decode(t, render(t, v))
			name := zotName(v)
			cm := find(t, objs, "ConfigMap", name)
			raw, _, _ := unstructured.NestedString(cm.Object, "data", "config.json")
			dec := json.NewDecoder(strings.NewReader(raw))
			dec.DisallowUnknownFields()
			var cfg zotConfig
			require.NoError(t, dec.Decode(&cfg), "zot config is not made of zot's keys:\n%s", raw)

			s := cfg.Storage
			require.NotNil(t, s.GC)
			require.True(t, *s.GC, "storage.gc must be on")
			require.Positive(t, duration(t, "gcDelay", s.GCDelay))
			require.Positive(t, duration(t, "gcInterval", s.GCInterval))
			require.Positive(t, duration(t, "retention.delay", s.Retention.Delay))
			require.False(t, s.Retention.DryRun)
			require.Len(t, s.Retention.Policies, 1)
			p := s.Retention.Policies[0]
			require.Equal(t, []string{"**"}, p.Repositories)
			require.NotNil(t, p.DeleteUntagged)
			require.True(t, *p.DeleteUntagged, "untagged manifests must be deleted")
			require.True(t, p.DeleteReferrers)
			require.Len(t, p.KeepTags, 1)
			require.Equal(t, []string{".*"}, p.KeepTags[0].Patterns)
			require.NotNil(t, p.KeepTags[0].PushedWithin)
			want := 24 * time.Hour
			if v.name == "zot-pvc" {
				want = 48 * time.Hour
				require.Equal(t, 10, p.KeepTags[0].MostRecentlyPushedCount)
			}
			require.Equal(t, want, duration(t, "pushedWithin", *p.KeepTags[0].PushedWithin))

			h := cfg.HTTP
			require.Equal(t, "5000", h.Port)
			require.GreaterOrEqual(t, duration(t, "readTimeout", h.ReadTimeout), 10*time.Minute)
			require.GreaterOrEqual(t, duration(t, "writeTimeout", h.WriteTimeout), 10*time.Minute)
			require.Equal(t, "info", cfg.Log.Level)

			tmpl := zotPodTemplate(t, objs, v)
			require.Contains(t, tmpl.Annotations, "checksum/config")
			zot := tmpl.Spec.Containers[0]
			switch v.name {
			case "zot-s3", "zot-s3-cluster":
				requireZotS3(t, v, objs, cfg, zot)
			default:
				require.Nil(t, s.StorageDriver)
				require.Nil(t, cfg.Cluster)
				require.True(t, s.Dedupe, "dedupe on filesystem storage")
			}
			if cfg.Cluster == nil {
				dep := &appsv1.Deployment{}
				into(t, find(t, objs, "Deployment", name), dep)
				require.Equal(t, appsv1.RecreateDeploymentStrategyType, dep.Spec.Strategy.Type)
				require.Equal(t, int32(1), *dep.Spec.Replicas)
			}
			require.Equal(t, "/livez", zot.LivenessProbe.HTTPGet.Path)
			require.Equal(t, "/readyz", zot.ReadinessProbe.HTTPGet.Path)
			require.Equal(t, "64Mi", zot.Resources.Requests.Memory().String())
			require.Equal(t, "50m", zot.Resources.Requests.Cpu().String())
			mountOf := func(path string) *corev1.VolumeMount {
				for i, m := range zot.VolumeMounts {
					if filepath.Join(m.MountPath, filepath.Base(path)) == path {
						return &zot.VolumeMounts[i]
					}
				}
				t.Fatalf("%s is not mounted", path)
				return nil
			}
			switch v.auth {
			case authHtpasswd:
				require.NotNil(t, h.Auth, "htpasswd mode: zot must check htpasswd")
				require.NotNil(t, h.Auth.HTPasswd)
				require.Nil(t, h.Auth.Bearer)
				mountOf(h.Auth.HTPasswd.Path)
			case authToken:
				// The realm, service and mounted Secret agree with the
				// webhook's flags (TestTokenMode); here: zot's side.
				require.NotNil(t, h.Auth, "token mode: zot must check bearer tokens")
				require.Nil(t, h.Auth.HTPasswd)
				require.NotNil(t, h.Auth.Bearer)
				require.Equal(t, "/etc/zot/token/bundle.pem", h.Auth.Bearer.Cert)
				require.True(t, mountOf(h.Auth.Bearer.Cert).ReadOnly)
			default:
				require.Nil(t, h.Auth, "mode none: no credentials")
			}
			var data *corev1.Volume
			for i := range tmpl.Spec.Volumes {
				if tmpl.Spec.Volumes[i].Name == "data" {
					data = &tmpl.Spec.Volumes[i]
				}
			}
			require.NotNil(t, data)
			if v.name == "zot-pvc" {
				require.NotNil(t, data.PersistentVolumeClaim)
				find(t, objs, "PersistentVolumeClaim", name)
			} else {
				require.NotNil(t, data.EmptyDir)
				require.Equal(t, "10Gi", data.EmptyDir.SizeLimit.String())
			}
		})
	}
}

// requireZotS3 checks the s3 variants: zot's s3 storageDriver as the values
// set it, no dedupe and no remote cache (no shared DynamoDB or Redis), the
// credentials from the Secret, and for two replicas zot's scale-out cluster:
// a StatefulSet whose pods are exactly the members, under a headless Service
// that publishes them before they are ready, members allowed to reach each
// other through the NetworkPolicy.
func requireZotS3(t *testing.T, v variant, objs []*unstructured.Unstructured, cfg zotConfig, zot corev1.Container) {
	t.Helper()
	s := cfg.Storage
	require.Equal(t, map[string]any{
		"name": "s3", "bucket": "tekton-oci-transport", "region": "us-east-1",
		"regionendpoint": "http://versitygw.storage.svc:7070", "forcepathstyle": true,
		"secure": false, "skipverify": false, "rootdirectory": "/zot",
	}, s.StorageDriver)
	require.False(t, s.Dedupe, "dedupe on s3 needs a shared cache")
	require.NotNil(t, s.RemoteCache)
	require.False(t, *s.RemoteCache)
	require.Equal(t, "/var/lib/registry", s.RootDirectory, "zot's local metadata, in the pod's emptyDir")
	env := map[string]string{}
	for _, e := range zot.Env {
		require.NotNil(t, e.ValueFrom, e.Name)
		require.Equal(t, "zot-s3-credentials", e.ValueFrom.SecretKeyRef.Name)
		env[e.Name] = e.ValueFrom.SecretKeyRef.Key
	}
	require.Equal(t, map[string]string{"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY"}, env)

	if v.name == "zot-s3" {
		require.Nil(t, cfg.Cluster, "one pod: no cluster")
		return
	}
	require.NotNil(t, cfg.Cluster)
	require.Len(t, cfg.Cluster.HashKey, 16, "zot wants a 16-character hashKey")
	sts := &appsv1.StatefulSet{}
	into(t, find(t, objs, "StatefulSet", zotName(v)), sts)
	require.Equal(t, int32(2), *sts.Spec.Replicas)
	require.Equal(t, appsv1.ParallelPodManagement, sts.Spec.PodManagementPolicy)
	headless := &corev1.Service{}
	into(t, find(t, objs, "Service", sts.Spec.ServiceName), headless)
	require.Equal(t, corev1.ClusterIPNone, headless.Spec.ClusterIP)
	require.True(t, headless.Spec.PublishNotReadyAddresses)
	require.Equal(t, sts.Spec.Selector.MatchLabels, headless.Spec.Selector)
	var want []string
	for i := range 2 {
		want = append(want, fmt.Sprintf("%s-%d.%s.%s.svc:5000", zotName(v), i, headless.Name, v.namespace))
	}
	require.Equal(t, want, cfg.Cluster.Members, "the members are the StatefulSet's pods")
	// The Service the steps use still selects every member.
	svc := &corev1.Service{}
	into(t, find(t, objs, "Service", zotName(v)), svc)
	require.Equal(t, sts.Spec.Selector.MatchLabels, svc.Spec.Selector)
	np := &networkingv1.NetworkPolicy{}
	into(t, find(t, objs, "NetworkPolicy", zotName(v)), np)
	peers := false
	for _, from := range np.Spec.Ingress[0].From {
		if from.PodSelector != nil && reflect.DeepEqual(from.PodSelector.MatchLabels, sts.Spec.Selector.MatchLabels) && from.NamespaceSelector == nil {
			peers = true
		}
	}
	require.True(t, peers, "the NetworkPolicy must let the members proxy to each other")
}

func fullname(v variant) string {
	if strings.Contains(v.release, "tekton-oci-transport") {
		return v.release
	}
	return v.release + "-tekton-oci-transport"
}

func zotName(v variant) string { return fullname(v) + "-zot" }

var (
	webhookBinOnce sync.Once
	webhookBin     string
	webhookBinErr  error
)

// goBinary is the go command that runs these tests.
func goBinary() string {
	if goBin, err := exec.LookPath("go"); err == nil {
		return goBin
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// buildWebhook builds cmd/webhook once (the Go build cache makes this quick
// after the first time).
func buildWebhook(t *testing.T) string {
	t.Helper()
	webhookBinOnce.Do(func() {
		webhookBin = filepath.Join(helmHome, "bin", "webhook")
		cmd := exec.Command(goBinary(), "build", "-o", webhookBin, "./cmd/webhook")
		cmd.Dir = repoRoot
		out, err := cmd.CombinedOutput()
		if err != nil {
			webhookBinErr = err
			webhookBin = string(out)
		}
	})
	require.NoError(t, webhookBinErr, webhookBin)
	return webhookBin
}

// TestWebhookConfiguration: the chart's MutatingWebhookConfiguration is the
// one the webhook itself prints (webhook/registration) for exactly the flags
// the chart's Deployment passes, and those flags all exist.
func TestWebhookConfiguration(t *testing.T) {
	if _, err := helm(t, "version", "--short"); err != nil {
		t.Fatal(err)
	}
	bin := buildWebhook(t)
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			objs := decode(t, render(t, v))
			dep := &appsv1.Deployment{}
			into(t, find(t, objs, "Deployment", fullname(v)), dep)
			c := dep.Spec.Template.Spec.Containers[0]
			require.Equal(t, "serve", c.Args[0])

			// Every flag once: one chart value per flag, no silent override.
			seen := map[string]bool{}
			for _, a := range c.Args[1:] {
				name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
				if name != "step-arg" {
					require.False(t, seen[name], "flag --%s passed twice", name)
				}
				seen[name] = true
			}

			cmd := exec.Command(bin, append(c.Args, "--print-webhook-configuration")...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			printed, err := cmd.Output()
			require.NoError(t, err, "webhook %s: %s", strings.Join(c.Args, " "), stderr.String())

			var want, got admissionregistrationv1.MutatingWebhookConfiguration
			require.NoError(t, yaml.UnmarshalStrict(printed, &want))
			into(t, find(t, objs, "MutatingWebhookConfiguration", fullname(v)), &got)
			require.Equal(t, want.Name, got.Name)
			require.Equal(t, want.Webhooks, got.Webhooks)

			if v.certManager {
				require.Equal(t, v.namespace+"/"+fullname(v), got.Annotations["cert-manager.io/inject-ca-from"])
				cert := find(t, objs, "Certificate", fullname(v))
				require.Equal(t, certmanager.GroupName+"/v1", cert.GetAPIVersion())
				secret, _, _ := unstructured.NestedString(cert.Object, "spec", "secretName")
				require.Contains(t, c.Args, "--tls-mode=cert-dir")
				require.Equal(t, secret, dep.Spec.Template.Spec.Volumes[0].Secret.SecretName)
				dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
				require.Contains(t, dns, fullname(v)+"."+v.namespace+".svc")
			} else {
				require.Contains(t, c.Args, "--tls-mode=self-managed")
				require.Empty(t, got.Annotations)
				// RBAC lets it patch exactly its own configuration and Secret.
				role := find(t, objs, "ClusterRole", fullname(v)+"-selfcert")
				names, _, _ := unstructured.NestedSlice(role.Object, "rules")
				require.Contains(t, names[0].(map[string]any)["resourceNames"], got.Name)
				require.Contains(t, c.Args, "--webhook-configuration="+got.Name)
				require.Contains(t, c.Args, "--tls-secret="+fullname(v)+"-tls")
			}
			// The VerificationPolicy permission comes exactly with the
			// check that needs it.
			checks := slices.Contains(c.Args, "--ignore-verification-policies=false")
			require.True(t, checks || slices.Contains(c.Args, "--ignore-verification-policies=true"))
			require.Equal(t, checks, grants(find(t, objs, "ClusterRole", fullname(v)), "tekton.dev", "verificationpolicies"))
			if v.name == "defaults" {
				// The default install matches the flag defaults of
				// `webhook convert`, so offline conversion shows what the
				// installed webhook does.
				require.Contains(t, c.Args, "--registry=tekton-oci-transport-zot.tekton-oci-transport.svc:5000")
			}
		})
	}
}

// requireRestricted: the restricted Pod Security Standard plus a read-only root.
func requireRestricted(t *testing.T, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	require.NotNil(t, sc, c.Name)
	require.True(t, *sc.ReadOnlyRootFilesystem, c.Name)
	require.False(t, *sc.AllowPrivilegeEscalation, c.Name)
	require.True(t, *sc.RunAsNonRoot, c.Name)
	require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop, c.Name)
	require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type, c.Name)
}

// TestEveryPodRestricted covers every container the chart renders, test pod included.
func TestEveryPodRestricted(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			for _, o := range decode(t, render(t, v)) {
				var spec corev1.PodSpec
				switch o.GetKind() {
				case "Deployment":
					d := &appsv1.Deployment{}
					into(t, o, d)
					spec = d.Spec.Template.Spec
				case "StatefulSet":
					d := &appsv1.StatefulSet{}
					into(t, o, d)
					spec = d.Spec.Template.Spec
				case "Pod":
					p := &corev1.Pod{}
					into(t, o, p)
					spec = p.Spec
				default:
					continue
				}
				for _, c := range append(spec.Containers, spec.InitContainers...) {
					requireRestricted(t, c)
				}
			}
		})
	}
}

// TestValuesDocumented: every value has a comment in values.yaml, a row in
// the chart README and a place in values.schema.json.
func TestValuesDocumented(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	require.NoError(t, err)
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	require.NoError(t, err)
	schemaRaw, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	require.NoError(t, err)
	var schema map[string]any
	require.NoError(t, json.Unmarshal(schemaRaw, &schema))

	var doc yamlv3.Node
	require.NoError(t, yamlv3.Unmarshal(raw, &doc))
	var walk func(n *yamlv3.Node, prefix string, schema map[string]any)
	count := 0
	walk = func(n *yamlv3.Node, prefix string, schema map[string]any) {
		props, _ := schema["properties"].(map[string]any)
		require.Equal(t, false, schema["additionalProperties"], "schema of %q must reject unknown keys", prefix)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			path := strings.TrimPrefix(prefix+"."+k.Value, ".")
			sub, ok := props[k.Value].(map[string]any)
			require.True(t, ok, "values.schema.json does not describe %s", path)
			// Kubernetes-shaped values (resources, issuerRef) are one value each.
			if _, nested := sub["properties"]; nested && val.Kind == yamlv3.MappingNode && k.Value != "issuerRef" && k.Value != "resources" {
				walk(val, path, sub)
				continue
			}
			count++
			require.NotEmpty(t, k.HeadComment, "values.yaml: %s has no comment", path)
			require.Contains(t, string(readme), "`"+path+"`", "chart README does not document %s", path)
		}
	}
	walk(doc.Content[0], "", schema)
	require.Greater(t, count, 50)
}

// TestDeployManifests: deploy/manifests is the default render (no test hook),
// with the namespace, for `kubectl apply -f`. `make manifests` rewrites it.
func TestDeployManifests(t *testing.T) {
	golden.Check(t, filepath.Join(repoRoot, manifestsFile), []byte(manifests(t)), chartHint)
}

// manifests renders deploy/manifests/tekton-oci-transport.yaml.
func manifests(t testing.TB) string {
	out, err := helm(t, "template", defaultRelease, chartDir, "--namespace", defaultNamespace, "--skip-tests")
	if err != nil {
		t.Fatal(err)
	}
	return `# tekton-oci-transport: the Helm chart (charts/tekton-oci-transport) rendered
# with its default values, for ` + "`kubectl apply -f`" + `. Generated by ` + "`make manifests`" + `; do
# not edit (make test fails when it differs from a fresh render).
#
# Defaults: webhook in namespace tekton-oci-transport with self-managed TLS,
# the bundled zot registry, NetworkPolicies. Anything else: use the chart.
apiVersion: v1
kind: Namespace
metadata:
  name: ` + defaultNamespace + `
  labels:
    app.kubernetes.io/part-of: tekton-oci-transport
    # The webhook and zot run under the restricted Pod Security Standard.
    pod-security.kubernetes.io/enforce: restricted
` + out
}

// TestImagesAgree: the chart's step command is where the Dockerfile puts the
// step binary, and the webhook image runs `serve` as the chart expects.
func TestImagesAgree(t *testing.T) {
	dockerfile, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	require.NoError(t, err)
	var values struct {
		Steps struct {
			Command string `json:"command"`
		} `json:"steps"`
	}
	raw, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, &values))
	require.Contains(t, string(dockerfile), "COPY --from=build /out/oci-transport-step "+values.Steps.Command+"\n")
	require.Contains(t, string(dockerfile), `ENTRYPOINT ["`+values.Steps.Command+`"]`)
	require.Contains(t, string(dockerfile), `ENTRYPOINT ["/usr/local/bin/webhook"]`)
	for _, target := range []string{" AS step\n", " AS webhook\n"} {
		require.Contains(t, string(dockerfile), target)
	}
}

// grants reports whether a rendered ClusterRole has a rule for resource.
func grants(role *unstructured.Unstructured, group, resource string) bool {
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	for _, r := range rules {
		rule := r.(map[string]any)
		groups, _, _ := unstructured.NestedStringSlice(rule, "apiGroups")
		resources, _, _ := unstructured.NestedStringSlice(rule, "resources")
		if slices.Contains(groups, group) && slices.Contains(resources, resource) {
			return true
		}
	}
	return false
}
