package chart

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
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
// own configuration (self-managed TLS). The verbs it needs only during an
// admission (ResolutionRequests) and what it must not be able to do are
// checked with SubjectAccessReviews.
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
	} {
		attr := tc.attr
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:authenticated"}, ResourceAttributes: &attr,
		}}
		require.NoError(t, c.Create(ctx, sar))
		require.Equal(t, tc.allowed, sar.Status.Allowed, "%s %s/%s %s in %q", attr.Verb, attr.Group, attr.Resource, attr.Name, attr.Namespace)
	}

	// The chart's flags, then what differs outside a pod: where to listen and
	// how to reach the API server (the last occurrence of a flag wins).
	health := freePort(t)
	args := append([]string{}, dep.Spec.Template.Spec.Containers[0].Args...)
	args = append(args,
		"--kubeconfig="+filepath.Join(dir, "kubeconfig"),
		"--cert-dir="+filepath.Join(dir, "certs"),
		"--listen-host=127.0.0.1",
		fmt.Sprintf("--port=%d", freePort(t)),
		fmt.Sprintf("--health-address=127.0.0.1:%d", health),
		"--metrics-address=0",
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
}
