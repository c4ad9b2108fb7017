package chart

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
	"github.com/tekton-oci-transport/tekton-oci-transport/registryauth"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
)

// flagValues maps each --name=value of args to its value (the last one wins,
// as for the flag package).
func flagValues(args []string) map[string]string {
	out := map[string]string{}
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, value, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		out[name] = value
	}
	return out
}

// zotConfigJSON is the rendered zot config.json of a variant.
func zotConfigJSON(t *testing.T, objs []*unstructured.Unstructured, v variant) string {
	t.Helper()
	raw, _, _ := unstructured.NestedString(find(t, objs, "ConfigMap", zotName(v)).Object, "data", "config.json")
	require.NotEmpty(t, raw)
	return raw
}

// TestZotVerify: the real zot (v2.1.20, ZOT_BIN) accepts the configuration
// of every variant that installs it (`zot verify` loads it with zot's own
// strict loader and checks it as `zot serve` would at start).
func TestZotVerify(t *testing.T) {
	bin := testenv.ZotBin(t)
	for _, v := range variants {
		if !v.zot {
			continue
		}
		t.Run(v.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			require.NoError(t, os.WriteFile(path, []byte(zotConfigJSON(t, decode(t, render(t, v)), v)), 0o644))
			out, err := exec.Command(bin, "verify", path).CombinedOutput()
			require.NoError(t, err, "zot verify:\n%s", out)
			require.Contains(t, string(out), "config file is valid")
		})
	}
}

// TestTokenMode: in token mode (registry.auth.mode=token) the pieces that
// must agree do: the webhook's --token-* flags, its container and Service
// port, its startup probe, its RBAC (TokenReviews; create and get of its
// own Secret, nothing else), zot's bearer realm, service and mounted
// Secret, the NetworkPolicy rule for the token port and the test pod's
// projected token. In the other modes none of it is rendered.
func TestTokenMode(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			objs := decode(t, render(t, v))
			name := fullname(v)
			dep := &appsv1.Deployment{}
			into(t, find(t, objs, "Deployment", name), dep)
			c := dep.Spec.Template.Spec.Containers[0]
			flags := flagValues(c.Args)
			svc := &corev1.Service{}
			into(t, find(t, objs, "Service", name), svc)
			var pod *corev1.Pod
			for _, o := range objs {
				if o.GetKind() == "Pod" {
					pod = &corev1.Pod{}
					into(t, o, pod)
				}
			}
			require.NotNil(t, pod, "the test pod")

			if v.auth != authToken {
				require.Equal(t, "0", flags["token-service-address"], "token service off")
				for f := range flags {
					require.False(t, strings.HasPrefix(f, "token-") && f != "token-service-address", "--%s without the token service", f)
				}
				for _, o := range objs {
					require.NotContains(t, o.GetName(), "token", "%s %s in mode %s", o.GetKind(), o.GetName(), v.auth)
				}
				for _, p := range svc.Spec.Ports {
					require.NotEqual(t, "token", p.Name)
				}
				require.Nil(t, c.StartupProbe)
				for _, vol := range pod.Spec.Volumes {
					require.Nil(t, vol.Projected, "no projected token in mode %s", v.auth)
				}
				return
			}

			addr := flags["token-service-address"]
			require.True(t, strings.HasPrefix(addr, ":"), "--token-service-address=%s", addr)
			port, err := strconv.Atoi(strings.TrimPrefix(addr, ":"))
			require.NoError(t, err)
			tls, err := strconv.ParseBool(flags["token-service-tls"])
			require.NoError(t, err)
			secret := flags["token-signing-secret"]
			require.NotEmpty(t, secret)
			for _, f := range []string{"token-audience", "token-issuer", "token-registry-service", "token-ttl"} {
				require.NotEmpty(t, flags[f], "--%s", f)
			}
			require.NotContains(t, flags, "registry-token-audience", "one chart value per flag: the steps' audience follows --token-audience")
			if v.name == "defaults" {
				// The default install is the binary's defaults, so
				// `webhook convert --registry-token-audience=<default>`
				// and `webhook token-key` without flags match it.
				require.Equal(t, registryauth.DefaultAudience, flags["token-audience"])
				require.Equal(t, registryauth.DefaultIssuer, flags["token-issuer"])
				require.Equal(t, registryauth.DefaultService, flags["token-registry-service"])
				require.Equal(t, registryauth.DefaultSecretName, flags["token-signing-secret"])
				require.Equal(t, registryauth.DefaultTTL.String(), duration(t, "ttl", flags["token-ttl"]).String())
				require.Equal(t, "false", flags["token-service-tls"])
			}
			scheme := "http"
			if tls {
				scheme = "https"
			}
			realm := scheme + "://" + name + "." + v.namespace + ".svc:" + strconv.Itoa(port) + "/token"

			// The port: in the pod, on the Service, probed before the pod is ready.
			require.Contains(t, c.Ports, corev1.ContainerPort{Name: "token", ContainerPort: int32(port), Protocol: corev1.ProtocolTCP})
			require.Contains(t, svc.Spec.Ports, corev1.ServicePort{Name: "token", Port: int32(port), TargetPort: intstr.FromString("token"), Protocol: corev1.ProtocolTCP})
			require.NotNil(t, c.StartupProbe, "the pod is ready only once the token service holds its key")
			get := c.StartupProbe.HTTPGet
			require.Equal(t, "/healthz", get.Path)
			require.Equal(t, intstr.FromString("token"), get.Port)
			require.Equal(t, corev1.URIScheme(strings.ToUpper(scheme)), get.Scheme)
			// With TLS the token service serves the webhook's certificate,
			// whose names are the Service's.
			if tls {
				require.Contains(t, flags, "cert-dir")
			}

			// RBAC: exactly what registryauth needs, bound to the webhook.
			sa := rbacv1.Subject{Kind: "ServiceAccount", Name: dep.Spec.Template.Spec.ServiceAccountName, Namespace: v.namespace}
			cr := &rbacv1.ClusterRole{}
			into(t, find(t, objs, "ClusterRole", name+"-token-review"), cr)
			require.Equal(t, []rbacv1.PolicyRule{{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}}}, cr.Rules)
			crb := &rbacv1.ClusterRoleBinding{}
			into(t, find(t, objs, "ClusterRoleBinding", name+"-token-review"), crb)
			require.Equal(t, cr.Name, crb.RoleRef.Name)
			require.Equal(t, []rbacv1.Subject{sa}, crb.Subjects)
			role := &rbacv1.Role{}
			into(t, find(t, objs, "Role", name+"-registry-token"), role)
			require.Equal(t, v.namespace, role.Namespace)
			require.Equal(t, []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
				{APIGroups: []string{""}, Resources: []string{"secrets"}, ResourceNames: []string{secret}, Verbs: []string{"get"}},
			}, role.Rules)
			rb := &rbacv1.RoleBinding{}
			into(t, find(t, objs, "RoleBinding", name+"-registry-token"), rb)
			require.Equal(t, role.Name, rb.RoleRef.Name)
			require.Equal(t, "Role", rb.RoleRef.Kind)
			require.Equal(t, []rbacv1.Subject{sa}, rb.Subjects)

			// zot: the realm is the webhook Service's token port, the
			// service the tokens' aud, the certificate from the Secret.
			if v.zot {
				var cfg zotConfig
				dec := json.NewDecoder(strings.NewReader(zotConfigJSON(t, objs, v)))
				dec.DisallowUnknownFields()
				require.NoError(t, dec.Decode(&cfg))
				require.NotNil(t, cfg.HTTP.Auth)
				require.NotNil(t, cfg.HTTP.Auth.Bearer)
				b := cfg.HTTP.Auth.Bearer
				require.Equal(t, realm, b.Realm)
				require.Equal(t, flags["token-registry-service"], b.Service)
				zpod := zotPodTemplate(t, objs, v)
				var vol *corev1.Volume
				for i := range zpod.Spec.Volumes {
					if zpod.Spec.Volumes[i].Name == "token" {
						vol = &zpod.Spec.Volumes[i]
					}
				}
				require.NotNil(t, vol, "zot mounts the token Secret")
				require.NotNil(t, vol.Secret)
				require.Equal(t, secret, vol.Secret.SecretName)
				require.Equal(t, []corev1.KeyToPath{{Key: "bundle.pem", Path: "bundle.pem"}}, vol.Secret.Items, "the certificates only, never the key")
				require.NotNil(t, vol.Secret.Optional)
				require.False(t, *vol.Secret.Optional, "zot waits for the Secret")
				require.Equal(t, "bundle.pem", filepath.Base(b.Cert))
				mounted := false
				for _, m := range zpod.Spec.Containers[0].VolumeMounts {
					mounted = mounted || (m.Name == "token" && m.MountPath == filepath.Dir(b.Cert) && m.ReadOnly)
				}
				require.True(t, mounted, "%s is not the token Secret's mount", b.Cert)
			}

			// NetworkPolicy: Tekton's pods and the test pod reach the token port.
			if o := findOptional(objs, "NetworkPolicy", name); o != nil {
				np := &networkingv1.NetworkPolicy{}
				into(t, o, np)
				var rule *networkingv1.NetworkPolicyIngressRule
				for i, r := range np.Spec.Ingress {
					for _, p := range r.Ports {
						if p.Port != nil && p.Port.IntValue() == port {
							rule = &np.Spec.Ingress[i]
						}
					}
				}
				require.NotNil(t, rule, "no ingress rule for the token port")
				require.Len(t, rule.From, 2)
				require.Equal(t, map[string]string{"app.kubernetes.io/managed-by": "tekton-pipelines"}, rule.From[0].PodSelector.MatchLabels)
				require.NotNil(t, rule.From[0].NamespaceSelector)
				require.Equal(t, "test", rule.From[1].PodSelector.MatchLabels["app.kubernetes.io/component"])
				require.Nil(t, rule.From[1].NamespaceSelector, "the test pod: release namespace only")
			} else {
				require.Equal(t, "no-networkpolicy", v.name)
			}

			// The test pod: a projected token for the audience, in the push
			// and pull only, a repository of its own namespace.
			var projected *corev1.ServiceAccountTokenProjection
			for _, vol := range pod.Spec.Volumes {
				if vol.Name == "registry-token" {
					projected = vol.Projected.Sources[0].ServiceAccountToken
				}
			}
			require.NotNil(t, projected)
			require.Equal(t, flags["token-audience"], projected.Audience)
			require.Equal(t, "token", projected.Path)
			require.False(t, *pod.Spec.AutomountServiceAccountToken, "no API token in the test pod")
			for _, tc := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
				mountsToken := slices.ContainsFunc(tc.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "registry-token" })
				moves := tc.Name == "push" || tc.Name == "pull"
				require.Equal(t, moves, mountsToken, "container %s", tc.Name)
				if !moves {
					continue
				}
				require.Contains(t, tc.Args, "--registry-token-file=/registry-token/token")
				require.Contains(t, tc.Args, "--repository="+flags["repository-prefix"]+"/"+v.namespace+"/helm-test/$(POD_UID)")
				require.Equal(t, tls, slices.Contains(tc.Args, "--ca-file=/token-ca/ca.crt"), "container %s", tc.Name)
			}
		})
	}
}

// findOptional returns the object of kind and name, or nil.
func findOptional(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	return nil
}

// startTokenZot brings up what the test pod talks to in token mode, from
// the render: the token service with the webhook's --token-* flags
// (registryauth, in this process, as the API server's admin) against the
// shared kube-apiserver, and the real zot with the chart's config.json in
// which only the listen address, the storage and the mounted paths are made
// local and the realm points at that service. It writes a real token of the
// pod's ServiceAccount (TokenRequest, the projected volume's audience and
// lifetime) where the pod mounts it under root, and returns zot's address.
func startTokenZot(t *testing.T, v variant, objs []*unstructured.Unstructured, pod *corev1.Pod, root string) string {
	t.Helper()
	zotBin := testenv.ZotBin(t)
	_, c := apiServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	createNamespace(t, c, v.namespace)
	cs, err := kubernetes.NewForConfig(envCfg)
	require.NoError(t, err)
	saName := pod.Spec.ServiceAccountName
	if saName == "" {
		saName = "default" // envtest runs no controller that creates it
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: saName, Namespace: v.namespace}}
	if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	// The token service, as the webhook runs it.
	dep := &appsv1.Deployment{}
	into(t, find(t, objs, "Deployment", fullname(v)), dep)
	flags := flagValues(dep.Spec.Template.Spec.Containers[0].Args)
	ttl, err := time.ParseDuration(flags["token-ttl"])
	require.NoError(t, err)
	svc, err := registryauth.New(envCfg, registryauth.Options{
		Namespace: v.namespace, SecretName: flags["token-signing-secret"],
		Issuer: flags["token-issuer"], Service: flags["token-registry-service"], Audience: flags["token-audience"],
		RepositoryPrefix: flags["repository-prefix"], TTL: ttl, Log: testr.New(t),
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- svc.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-served)
	})
	tokenURL := "http://" + ln.Addr().String()
	require.Eventually(t, func() bool {
		resp, err := http.Get(tokenURL + registryauth.HealthPath)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "the token service never held a key")

	// zot's mounts: the Secret's bundle.pem, what the kubelet would project.
	secret, err := cs.CoreV1().Secrets(v.namespace).Get(ctx, flags["token-signing-secret"], metav1.GetOptions{})
	require.NoError(t, err)
	dir := t.TempDir()
	var cfg map[string]any
	require.NoError(t, json.Unmarshal([]byte(zotConfigJSON(t, objs, v)), &cfg))
	httpCfg := cfg["http"].(map[string]any)
	bearer := httpCfg["auth"].(map[string]any)["bearer"].(map[string]any)
	require.Equal(t, "http://"+fullname(v)+"."+v.namespace+".svc:"+strings.TrimPrefix(flags["token-service-address"], ":")+"/token", bearer["realm"])
	bundle := filepath.Join(dir, "token", filepath.Base(bearer["cert"].(string)))
	require.NoError(t, os.MkdirAll(filepath.Dir(bundle), 0o755))
	require.NoError(t, os.WriteFile(bundle, secret.Data[registryauth.SecretBundle], 0o644))
	bearer["cert"] = bundle
	bearer["realm"] = tokenURL + registryauth.TokenPath
	addr, err := testenv.FreeAddr()
	require.NoError(t, err)
	host, port, _ := strings.Cut(addr, ":")
	httpCfg["address"], httpCfg["port"] = host, port
	cfg["storage"].(map[string]any)["rootDirectory"] = filepath.Join(dir, "data")
	raw, err := json.MarshalIndent(cfg, "", "  ")
	require.NoError(t, err)
	config := filepath.Join(dir, "config.json")
	require.NoError(t, os.WriteFile(config, raw, 0o644))
	logs := &syncBuffer{}
	cmd := exec.Command(zotBin, "serve", config)
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("zot logs:\n%s", logs.String())
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}, 30*time.Second, 50*time.Millisecond, "zot never answered")
	resp, err := http.Get("http://" + addr + "/v2/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "zot must ask for a token")
	require.Contains(t, resp.Header.Get("WWW-Authenticate"), `Bearer realm="`+tokenURL+registryauth.TokenPath+`"`)
	// The kubelet probes zot without credentials.
	zdep := &appsv1.Deployment{}
	into(t, find(t, objs, "Deployment", zotName(v)), zdep)
	zc := zdep.Spec.Template.Spec.Containers[0]
	for _, p := range []*corev1.Probe{zc.StartupProbe, zc.LivenessProbe, zc.ReadinessProbe} {
		require.Eventually(t, func() bool {
			resp, err := http.Get("http://" + addr + p.HTTPGet.Path)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, 30*time.Second, 100*time.Millisecond, "zot's probe %s needs no token", p.HTTPGet.Path)
	}

	// The projected token, where the pod mounts its volume.
	for _, vol := range pod.Spec.Volumes {
		if vol.Projected == nil {
			continue
		}
		p := vol.Projected.Sources[0].ServiceAccountToken
		tr, err := cs.CoreV1().ServiceAccounts(v.namespace).CreateToken(ctx, saName, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences: []string{p.Audience}, ExpirationSeconds: p.ExpirationSeconds,
		}}, metav1.CreateOptions{})
		require.NoError(t, err)
		require.NoError(t, os.MkdirAll(filepath.Join(root, vol.Name), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, vol.Name, p.Path), []byte(tr.Status.Token), 0o600))
	}
	return addr
}
