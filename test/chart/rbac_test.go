package chart

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/registryauth"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestWebhookRBAC installs the chart's RBAC and webhook configuration for
// real, then runs the webhook binary with the chart's flags as the chart's
// ServiceAccount (a client certificate for its user name, which RBAC treats
// as that ServiceAccount): with exactly those permissions it must sync its
// caches, become ready, create its TLS Secret and patch the caBundle of its
// own configuration (self-managed TLS), and run the registry token service
// (token mode, the default): create its signing Secret and issue a registry
// token for a real ServiceAccount token, which takes a TokenReview. The
// verbs it needs only during an admission (ResolutionRequests) and what it
// must not be able to do are checked with SubjectAccessReviews.
func TestWebhookRBAC(t *testing.T) {
	e, c := apiServer(t)
	bin := buildWebhook(t)
	ctx := context.Background()

	// A release of its own: the dry-run test uses the default names.
	v := variant{name: "defaults", release: "rbac", namespace: "rbac-test", zot: true}
	createNamespace(t, c, v.namespace)
	objs := decode(t, render(t, v, "--skip-tests"))
	var dep appsv1.Deployment
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "MutatingWebhookConfiguration":
			require.NoError(t, c.Create(ctx, o.DeepCopy()), "%s %s", o.GetKind(), o.GetName())
		case "Deployment":
			if o.GetName() == fullname(v) {
				into(t, o, &dep)
			}
		}
	}
	user := "system:serviceaccount:" + v.namespace + ":" + dep.Spec.Template.Spec.ServiceAccountName
	chartFlags := flagValues(dep.Spec.Template.Spec.Containers[0].Args)
	tokenSecret := chartFlags["token-signing-secret"]
	require.NotEmpty(t, tokenSecret, "the default install runs the token service")
	sa, err := e.AddUser(envtest.User{Name: user, Groups: []string{
		"system:serviceaccounts", "system:serviceaccounts:" + v.namespace, "system:authenticated",
	}}, nil)
	require.NoError(t, err)
	kubeconfig, err := sa.KubeConfig()
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "kubeconfig"), kubeconfig, 0o600))

	// What it needs during an admission, and what it must not do.
	for _, tc := range []struct {
		attr    authorizationv1.ResourceAttributes
		allowed bool
	}{
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "create", Group: "resolution.tekton.dev", Resource: "resolutionrequests"}, true},
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "get", Group: "resolution.tekton.dev", Resource: "resolutionrequests"}, true},
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "delete", Group: "resolution.tekton.dev", Resource: "resolutionrequests"}, true},
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "list", Group: "tekton.dev", Resource: "tasks"}, true},
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "update", Group: "tekton.dev", Resource: "tasks"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "list", Group: "tekton.dev", Resource: "verificationpolicies"}, true},
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "watch", Group: "tekton.dev", Resource: "verificationpolicies"}, true},
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "get", Group: "tekton.dev", Resource: "verificationpolicies"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "update", Group: "tekton.dev", Resource: "verificationpolicies"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "create", Group: "tekton.dev", Resource: "pipelineruns"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "get", Resource: "secrets"}, false},
		{authorizationv1.ResourceAttributes{Namespace: v.namespace, Verb: "get", Resource: "secrets", Name: "someone-elses"}, false},
		{authorizationv1.ResourceAttributes{Namespace: v.namespace, Verb: "list", Resource: "secrets"}, false},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: "someone-elses"}, false},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations", Name: fullname(v)}, true},
		// The token service: TokenReviews, and its own Secret, read only
		// (a rotation is the operator's).
		{authorizationv1.ResourceAttributes{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"}, true},
		{authorizationv1.ResourceAttributes{Namespace: v.namespace, Verb: "get", Resource: "secrets", Name: tokenSecret}, true},
		{authorizationv1.ResourceAttributes{Namespace: v.namespace, Verb: "update", Resource: "secrets", Name: tokenSecret}, false},
		{authorizationv1.ResourceAttributes{Namespace: v.namespace, Verb: "delete", Resource: "secrets", Name: tokenSecret}, false},
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "create", Resource: "secrets"}, false},
		{authorizationv1.ResourceAttributes{Namespace: "any", Verb: "create", Resource: "serviceaccounts", Subresource: "token"}, false},
		{authorizationv1.ResourceAttributes{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews"}, false},
	} {
		attr := tc.attr
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}, ResourceAttributes: &attr,
		}}
		require.NoError(t, c.Create(ctx, sar))
		require.Equal(t, tc.allowed, sar.Status.Allowed, "%s %s/%s/%s %s in %q", attr.Verb, attr.Group, attr.Resource, attr.Subresource, attr.Name, attr.Namespace)
	}

	// The chart's flags, then what differs outside a pod: where to listen and
	// how to reach the API server (the last occurrence of a flag wins).
	health, tokenPort := freePort(t), freePort(t)
	args := append([]string{}, dep.Spec.Template.Spec.Containers[0].Args...)
	args = append(args,
		"--kubeconfig="+filepath.Join(dir, "kubeconfig"),
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--listen-host=127.0.0.1",
		fmt.Sprintf("--port=%d", freePort(t)),
		fmt.Sprintf("--health-address=127.0.0.1:%d", health),
		"--metrics-address=0",
		fmt.Sprintf("--token-service-address=127.0.0.1:%d", tokenPort),
	)
	runCtx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(runCtx, bin, args...)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("webhook logs:\n%s", logs.String())
		}
	})

	ready := func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", health))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	require.Eventually(t, ready, 90*time.Second, 250*time.Millisecond, "webhook never became ready")
	require.NotContains(t, strings.ToLower(logs.String()), "forbidden")

	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	require.Eventually(t, func() bool {
		if err := c.Get(ctx, types.NamespacedName{Name: fullname(v)}, &mwc); err != nil {
			return false
		}
		for _, w := range mwc.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return false
			}
		}
		return true
	}, 30*time.Second, 250*time.Millisecond, "caBundle never patched")
	var secret corev1.Secret
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: v.namespace, Name: fullname(v) + "-tls"}, &secret))
	require.NotEmpty(t, secret.Data)

	// The token service: healthy (it created its signing Secret), and a
	// run's ServiceAccount token buys a registry token for its namespace,
	// which takes a TokenReview with the chart's ClusterRole.
	tokenURL := fmt.Sprintf("http://127.0.0.1:%d", tokenPort)
	resp, err := http.Get(tokenURL + registryauth.HealthPath)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the startup probe's /healthz")
	var signing corev1.Secret
	require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: v.namespace, Name: tokenSecret}, &signing))
	require.NotEmpty(t, signing.Data[registryauth.SecretBundle])
	createNamespace(t, c, "rbac-team")
	require.NoError(t, c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "runner", Namespace: "rbac-team"}}))
	cs, err := kubernetes.NewForConfig(envCfg)
	require.NoError(t, err)
	tr, err := cs.CoreV1().ServiceAccounts("rbac-team").CreateToken(ctx, "runner", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{chartFlags["token-audience"]}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	repo := chartFlags["repository-prefix"] + "/rbac-team/run/ws"
	q := url.Values{"service": {chartFlags["token-registry-service"]}, "scope": {"repository:" + repo + ":pull,push"}}
	req, err := http.NewRequest(http.MethodGet, tokenURL+registryauth.TokenPath+"?"+q.Encode(), nil)
	require.NoError(t, err)
	req.SetBasicAuth("oci-transport-step", tr.Status.Token)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var issued struct {
		Token string `json:"token"`
	}
	require.Equal(t, http.StatusOK, resp.StatusCode, "token request")
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&issued))
	var claims registryauth.Claims
	_, _, err = jwt.NewParser().ParseUnverified(issued.Token, &claims)
	require.NoError(t, err)
	require.Equal(t, "system:serviceaccount:rbac-team:runner", claims.Subject)
	require.Len(t, claims.Access, 1)
	require.Equal(t, repo, claims.Access[0].Name)
	require.NotContains(t, strings.ToLower(logs.String()), "forbidden")
}
