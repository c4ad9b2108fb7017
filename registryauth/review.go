package registryauth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
)

// Identity is the ServiceAccount a token was issued to.
type Identity struct {
	Namespace, Name string
	// Pod is the pod the token is bound to, when the API server says so.
	Pod string
}

// Username is the Kubernetes user name of the ServiceAccount.
func (id Identity) Username() string {
	return serviceAccountPrefix + id.Namespace + ":" + id.Name
}

const serviceAccountPrefix = "system:serviceaccount:"

// ErrUnauthenticated is a credential the API server did not accept for the
// audience, or an identity that is not a ServiceAccount.
var ErrUnauthenticated = errors.New("unauthenticated")

// maxTokenLen bounds a presented token (a projected ServiceAccount token is
// about 1 KiB).
const maxTokenLen = 16 << 10

// Reviewer authenticates ServiceAccount tokens with the TokenReview API.
type Reviewer struct {
	Reviews authenticationv1client.TokenReviewInterface
	// Audience the tokens must have been issued for (spec.audiences).
	Audience string
}

// Review asks the API server who token belongs to. It fails with an error
// wrapping ErrUnauthenticated when the API server does not authenticate it
// for the audience, or when it is not a ServiceAccount's; any other error
// is the API server's (the caller answers 503, the client retries).
func (r *Reviewer) Review(ctx context.Context, token string) (Identity, error) {
	if token == "" || len(token) > maxTokenLen {
		return Identity{}, fmt.Errorf("%w: no token, or one over %d bytes", ErrUnauthenticated, maxTokenLen)
	}
	tr, err := r.Reviews.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{r.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return Identity{}, fmt.Errorf("TokenReview: %w", err)
	}
	return identityOf(tr.Status, r.Audience)
}

// identityOf decides from a TokenReview's status: authenticated, for our
// audience (an API server that ignored spec.audiences returns none), and a
// ServiceAccount: `system:serviceaccount:<ns>:<name>`, in the group
// `system:serviceaccounts:<ns>` as the ServiceAccount authenticator puts it.
func identityOf(st authenticationv1.TokenReviewStatus, audience string) (Identity, error) {
	if !st.Authenticated {
		msg := "the API server did not authenticate the token for audience " + audience
		if st.Error != "" {
			msg += ": " + st.Error
		}
		return Identity{}, fmt.Errorf("%w: %s", ErrUnauthenticated, msg)
	}
	if !slices.Contains(st.Audiences, audience) {
		return Identity{}, fmt.Errorf("%w: token audiences %q do not include %s", ErrUnauthenticated, st.Audiences, audience)
	}
	rest, ok := strings.CutPrefix(st.User.Username, serviceAccountPrefix)
	ns, name, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || !dnsLabelRE.MatchString(ns) || name == "" || strings.Contains(name, ":") {
		return Identity{}, fmt.Errorf("%w: user %q is not a ServiceAccount", ErrUnauthenticated, st.User.Username)
	}
	if !slices.Contains(st.User.Groups, "system:serviceaccounts:"+ns) {
		return Identity{}, fmt.Errorf("%w: user %q is not in group system:serviceaccounts:%s", ErrUnauthenticated, st.User.Username, ns)
	}
	id := Identity{Namespace: ns, Name: name}
	if pods := st.User.Extra["authentication.kubernetes.io/pod-name"]; len(pods) == 1 {
		id.Pod = pods[0]
	}
	return id, nil
}
