package registryauth

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/registryauth"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	repoA = prefix + "/" + teamA + "/5f0c9a1e-uid/workarea"
	repoB = prefix + "/" + teamB + "/77aa01b2-uid/workarea"
)

// A namespace's ServiceAccount token buys pull and push on that namespace's
// repositories and nothing else.
func TestNamespaceGetsItsOwnRepositoriesOnly(t *testing.T) {
	needSuite(t)
	tokA := saToken(t, teamA, suite.pods[teamA], registryauth.DefaultAudience)
	tokB := saToken(t, teamB, suite.pods[teamB], registryauth.DefaultAudience)

	got := requestToken(t, suite.tokenURL, suite.bundle, tokA,
		"repository:"+repoA+":pull,push", "repository:"+repoB+":pull,push", "registry:catalog:*", "repository:"+repoA+":delete")
	require.Equal(t, http.StatusOK, got.status, got.errMsg)
	require.Equal(t, []registryauth.Access{{Type: "repository", Name: repoA, Actions: []string{"pull", "push"}}}, got.claims.Access)
	require.Equal(t, "system:serviceaccount:team-a:runner", got.claims.Subject)
	require.Equal(t, jwt.ClaimStrings{registryauth.DefaultService}, got.claims.Audience)

	got = requestToken(t, suite.tokenURL, suite.bundle, tokB, "repository:"+repoA+":pull", "repository:"+repoB+":pull")
	require.Equal(t, http.StatusOK, got.status, got.errMsg)
	require.Equal(t, []registryauth.Access{{Type: "repository", Name: repoB, Actions: []string{"pull"}}}, got.claims.Access)

	got = requestToken(t, suite.tokenURL, suite.bundle, tokA, "registry:catalog:*")
	require.Equal(t, http.StatusOK, got.status, "asking for more than allowed is no error (the spec)")
	require.Empty(t, got.claims.Access, "no catalog")

	// A token not bound to a pod (TokenRequest without a bound object) is a
	// ServiceAccount's too.
	got = requestToken(t, suite.tokenURL, suite.bundle, saToken(t, teamA, nil, registryauth.DefaultAudience), "repository:"+repoA+":pull")
	require.Equal(t, http.StatusOK, got.status, got.errMsg)
	require.Len(t, got.claims.Access, 1)
}

// Every credential that is not a live ServiceAccount token for our
// audience gets 401, with the reason.
func TestRefusedCredentials(t *testing.T) {
	needSuite(t)
	tokA := saToken(t, teamA, suite.pods[teamA], registryauth.DefaultAudience)
	past := time.Now().Add(-2 * time.Hour)
	expired := resigned(t, tokA, apiServerSigningKey(t), func(c jwt.MapClaims) {
		c["iat"], c["nbf"], c["exp"] = past.Unix(), past.Unix(), past.Add(10*time.Minute).Unix()
	})
	forged := resigned(t, tokA, otherKey(t), func(jwt.MapClaims) {})
	scope := "repository:" + repoA + ":pull,push"
	for _, tc := range []struct {
		name, token, msg string
	}{
		{"no credentials", "", "a ServiceAccount token is required"},
		{"expired", expired, "expired"},
		{"forged", forged, "did not authenticate the token"},
		{"the API server's own audience", saToken(t, teamA, suite.pods[teamA], "https://kubernetes.default.svc"), "did not authenticate the token"},
		{"another audience", saToken(t, teamA, suite.pods[teamA], "vault"), "did not authenticate the token"},
		{"not a ServiceAccount", aliceToken, `user "alice" is not a ServiceAccount`},
		{"named like a ServiceAccount by a static token file", impostorToken, "is not in group system:serviceaccounts:team-a"},
		{"garbage", "not-a-jwt", "did not authenticate the token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := requestToken(t, suite.tokenURL, suite.bundle, tc.token, scope)
			require.Equal(t, http.StatusUnauthorized, got.status)
			require.Empty(t, got.token)
			require.Contains(t, got.errMsg, tc.msg)
		})
	}
}

// A pod-bound token stops working when its pod is deleted (the API server
// caches a successful authentication for 10 s, the token service its
// TokenReviews for DefaultReviewCacheTTL, 10 s).
func TestTokenOfADeletedPodIsRefused(t *testing.T) {
	needSuite(t)
	ctx := context.Background()
	pod, err := suite.admin.CoreV1().Pods(teamA).Create(ctx, taskPod("short-lived"), metav1.CreateOptions{})
	require.NoError(t, err)
	tok := saToken(t, teamA, pod, registryauth.DefaultAudience)
	scope := "repository:" + repoA + ":pull"
	require.Equal(t, http.StatusOK, requestToken(t, suite.tokenURL, suite.bundle, tok, scope).status)
	require.NoError(t, suite.admin.CoreV1().Pods(teamA).Delete(ctx, pod.Name, metav1.DeleteOptions{}))
	require.Eventually(t, func() bool {
		return requestToken(t, suite.tokenURL, suite.bundle, tok, scope).status == http.StatusUnauthorized
	}, 30*time.Second, 250*time.Millisecond)
}
