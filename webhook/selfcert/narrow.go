package selfcert

import (
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/rest"
)

// narrowed returns cfg whose lists and watches of the Secrets in namespace
// ask for the one named name only (fieldSelector=metadata.name=name).
//
// cert-controller reads its Secret from an informer over every Secret of
// the namespace, and takes no selector. Narrowed, that informer lists our
// Secret alone, RBAC can grant list and watch by resourceNames (the API
// server authorizes a list with a metadata.name field selector as a read of
// that name), and the webhook never reads the release namespace's other
// Secrets (the registry's credentials, the token signing key, Helm's
// releases).
func narrowed(cfg *rest.Config, namespace, name string) *rest.Config {
	c := rest.CopyConfig(cfg)
	collection := "/api/v1/namespaces/" + namespace + "/secrets"
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	c.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			if req.Method != http.MethodGet || !strings.HasSuffix(req.URL.Path, collection) || req.URL.Query().Has("fieldSelector") {
				return rt.RoundTrip(req)
			}
			r := req.Clone(req.Context())
			q := r.URL.Query()
			q.Set("fieldSelector", selector)
			r.URL.RawQuery = q.Encode()
			return rt.RoundTrip(r)
		})
	})
	return c
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
