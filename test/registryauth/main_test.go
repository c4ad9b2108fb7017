// Package registryauth tests the registry token service end to end: a real
// kube-apiserver and etcd (envtest, KUBEBUILDER_ASSETS) issue and review
// real ServiceAccount tokens; the service runs as a user with only the RBAC
// the chart grants it; the step's transport trades those tokens for
// registry tokens against the real zot (ZOT_BIN) and CNCF Distribution
// (REGISTRY_BIN) configured for token auth with the service's bundle.
// Without a component the tests that need it skip, or fail under CI.
package registryauth

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
	"github.com/tekton-oci-transport/tekton-oci-transport/registryauth"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const (
	release = "tekton-oci-transport" // the webhook's namespace
	prefix  = "tekton-oci-transport" // --repository-prefix
	teamA   = "team-a"
	teamB   = "team-b"
	sa      = "runner"
	secret  = registryauth.DefaultSecretName

	// Static tokens of the API server's --token-auth-file: a person, and
	// a user named like a ServiceAccount that the ServiceAccount
	// authenticator did not vouch for (no system:serviceaccounts:<ns>).
	aliceToken    = "alice-static-token"
	impostorToken = "impostor-static-token"
)

var suite struct {
	skip  string
	env   *envtest.Environment
	admin kubernetes.Interface
	// serviceUser is the token service's identity: only the chart's RBAC.
	serviceUser *rest.Config
	// tokenURL is the running service's realm; bundle its bundle.pem.
	tokenURL, bundle string
	pods             map[string]*corev1.Pod // by namespace
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "FAIL:", err); return 1 }
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		msg := "KUBEBUILDER_ASSETS is not set: the token service tests need kube-apiserver and etcd; run `make test`, or set KUBEBUILDER_ASSETS=$(hack/tools.sh envtest)"
		if testenv.InCI() {
			return fail(fmt.Errorf("%s", msg))
		}
		suite.skip = msg
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "registryauth-e2e-")
	if err != nil {
		return fail(err)
	}
	defer os.RemoveAll(dir)
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(aliceToken+",alice,alice-uid\n"+
		impostorToken+",system:serviceaccount:"+teamA+":impostor,impostor-uid\n"), 0o600); err != nil {
		return fail(err)
	}
	suite.env = &envtest.Environment{}
	api := suite.env.ControlPlane.GetAPIServer()
	api.Configure().Set("token-auth-file", tokens)
	// The API server's audiences include ours only so that the static
	// tokens (audience-agnostic) authenticate for it: then what refuses
	// them is the service's ServiceAccount check, not the audience.
	api.Configure().Set("api-audiences", "https://kubernetes.default.svc,"+registryauth.DefaultAudience)
	cfg, err := suite.env.Start()
	if err != nil {
		return fail(fmt.Errorf("starting envtest: %w", err))
	}
	defer func() { _ = suite.env.Stop() }()
	if suite.admin, err = kubernetes.NewForConfig(cfg); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := setUp(ctx); err != nil {
		return fail(err)
	}
	user, err := suite.env.AddUser(envtest.User{Name: "tekton-oci-transport-webhook"}, cfg)
	if err != nil {
		return fail(err)
	}
	suite.serviceUser = user.Config()
	if err := grantServiceRBAC(ctx, "tekton-oci-transport-webhook", secret); err != nil {
		return fail(err)
	}
	done, err := startService(ctx, secret, 0)
	if err != nil {
		return fail(err)
	}
	suite.tokenURL = done.url
	sec, err := suite.admin.CoreV1().Secrets(release).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		return fail(fmt.Errorf("the service did not create its Secret: %w", err))
	}
	suite.bundle = filepath.Join(dir, "bundle.pem")
	if err := os.WriteFile(suite.bundle, sec.Data[registryauth.SecretBundle], 0o644); err != nil {
		return fail(err)
	}
	code := m.Run()
	cancel()
	if err := <-done.err; err != nil {
		return fail(err)
	}
	return code
}

func needSuite(t *testing.T) {
	t.Helper()
	if suite.skip != "" {
		t.Skip(suite.skip)
	}
}

// setUp makes the namespaces, a ServiceAccount and a pod of it in each team
// namespace (the pods bind the tokens, as the kubelet's projected tokens
// are bound to theirs).
func setUp(ctx context.Context) error {
	cs := suite.admin
	suite.pods = map[string]*corev1.Pod{}
	for _, ns := range []string{release, teamA, teamB} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		if ns == release {
			continue
		}
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		pod, err := cs.CoreV1().Pods(ns).Create(ctx, taskPod("build"), metav1.CreateOptions{})
		if err != nil {
			return err
		}
		suite.pods[ns] = pod
	}
	return nil
}

func taskPod(name string) *corev1.Pod {
	no := false
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa, AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "step", Image: "oci-transport-step:e2e"}},
		},
	}
}

// grantServiceRBAC gives user what the chart must give the webhook's
// ServiceAccount for the token service, and nothing more: create
// TokenReviews (cluster-wide), create Secrets and get and update the
// signing Secret in its namespace.
func grantServiceRBAC(ctx context.Context, user, secretName string) error {
	rbac := suite.admin.RbacV1()
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	name := "token-service-" + secretName
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := rbac.Roles(release).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "update"}, ResourceNames: []string{secretName}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := rbac.RoleBindings(release).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: subject,
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
	}, metav1.CreateOptions{})
	return err
}

type running struct {
	url string
	err chan error
	svc *registryauth.Service
}

// startService runs a token service as the webhook does (registryauth.New
// with the service user's config) on a free 127.0.0.1 port, and waits
// until it has its key.
func startService(ctx context.Context, secretName string, reload time.Duration) (*running, error) {
	svc, err := registryauth.New(suite.serviceUser, registryauth.Options{
		Namespace: release, SecretName: secretName,
		Issuer: registryauth.DefaultIssuer, Service: registryauth.DefaultService, Audience: registryauth.DefaultAudience,
		RepositoryPrefix: prefix, TTL: registryauth.MinTTL, Log: logr.Discard(),
	})
	if err != nil {
		return nil, err
	}
	svc.ReloadInterval = reload
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &running{url: "http://" + ln.Addr().String() + registryauth.TokenPath, err: make(chan error, 1), svc: svc}
	go func() { r.err <- svc.Serve(ctx, ln) }()
	health := "http://" + ln.Addr().String() + registryauth.HealthPath
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-r.err:
			return nil, fmt.Errorf("token service stopped: %w", err)
		default:
		}
		if resp, err := http.Get(health); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
	}
	return nil, fmt.Errorf("token service not ready on %s", health)
}
