// Package registryauth is the registry token service: each namespace's
// runs may read and write only their own namespace's repositories.
//
// # Flow
//
// Every converted task gets a projected ServiceAccount token with the
// audience DefaultAudience (--token-audience), mounted into the injected
// steps; the step reads it on each token request (--registry-token-file;
// the kubelet rotates it) and sends it as the Basic password to the realm
// the registry names in its 401 challenge. The token service, served by the
// webhook binary on its own port (--token-service-address), implements the
// Docker registry token flow (GET /token with Basic credentials, and the
// OAuth2 POST form: Handler):
//
//  1. it asks the API server with a TokenReview (authentication.k8s.io/v1,
//     spec.audiences = [audience]) whose token it is: authenticated, for the
//     audience (status.audiences), a ServiceAccount
//     `system:serviceaccount:<ns>:<name>` (Reviewer). A bound token of a
//     deleted pod, an expired, forged or other-audience token, a user that
//     is not a ServiceAccount: 401;
//  2. it grants the intersection of the requested scopes with pull and
//     push on `<prefix>/<ns>/...`, the repositories transform gives that
//     namespace's runs (<prefix>/<namespace>/<pipelinerun-uid>/<workspace>),
//     and nothing else: no other namespace, no catalog, no delete
//     (Authorize). Less than requested is no error (the spec): the token
//     holds what is granted and the registry refuses the rest;
//  3. it signs a JWT valid for --token-ttl (5 minutes; a client fetches a
//     new one when the registry answers 401) with the key in a Secret.
//
// # The tokens, as both registries take them
//
// Header: alg EdDSA (generated keys are Ed25519; ES256/ES384/RS256 keys
// put in the Secret by hand work too), typ JWT, kid = the key's thumbprint
// as CNCF Distribution computes it for each certificate of its
// rootcertbundle (Thumbprint): Distribution picks the key by kid when
// there is no x5c chain. zot v2.1.20 ignores the header and tries its one
// key. Claims: iss (Distribution checks it against auth.token.issuer), aud
// = [service] (Distribution checks it against auth.token.service; zot does
// not check it), sub = the ServiceAccount's user name, exp, nbf and iat
// as integers (iat and nbf backdated by ClockSkew: zot checks them with no
// leeway), jti, and access = [{type: repository, name, actions}], the form
// both read (zot matches type, name and action exactly; Distribution too,
// and takes `*` as every action, which is never granted).
//
// # Registry configuration
//
// zot v2.1.20 (http.auth.bearer; the minimal build has it):
//
//	"http": {"auth": {"bearer": {
//	  "realm": "http://tekton-oci-transport.<release-ns>.svc:<token port>/token",
//	  "service": "tekton-oci-transport-registry",
//	  "cert": "/etc/zot/token/bundle.pem"}}}
//
// zot loads `cert` once at startup (a config reload does not rebuild it)
// and uses only the first PEM block of the file (a JWKS must hold exactly
// one key): it trusts one key at a time.
//
// CNCF Distribution v3 (auth.token):
//
//	auth:
//	  token:
//	    realm: http://tekton-oci-transport.<release-ns>.svc:<token port>/token
//	    service: tekton-oci-transport-registry
//	    issuer: tekton-oci-transport
//	    rootcertbundle: /etc/distribution/token/bundle.pem
//
// Distribution reads every certificate of the bundle, once at startup.
//
// Both mount the item bundle.pem of the Secret (SecretBundle) only.
//
// # Keys and rotation
//
// The Secret --token-signing-secret in the webhook's namespace holds the
// signing key (key.pem), the bundle the registries trust (bundle.pem, the
// signing key's certificate first), and during a rotation the staged next
// key (next-key.pem). The first replica that finds no Secret creates it
// with a new key; every replica re-reads it every DefaultReloadInterval and
// signs with what it holds (KeyStore). A rotation publishes the new public
// key before anything is signed with it (Rotate): Stage adds the next key's
// certificate to the bundle, then the registries restart (neither re-reads
// its file); Promote signs with it and keeps the old certificate second, so
// Distribution still accepts the tokens issued before; Retire, a token TTL
// later, drops the old certificate. zot trusts only the first certificate,
// so with zot a rotation needs zot restarted right after Promote: until
// then it refuses the new tokens (a step fails with 401 rather than
// hanging), and the tokens issued before stop working at its restart (the
// client fetches a new one on the 401).
//
// # Transport
//
// The service serves plain HTTP by default, like the in-cluster zot it
// guards (the registry tokens and the artifacts cross the pod network in
// the clear anyway); the ServiceAccount token it receives is bound to
// DefaultAudience (the API server refuses it) and to its pod (worthless
// once the pod is gone). --token-service-tls serves HTTPS with the
// webhook's own certificate (--cert-dir, reloaded); the steps then need
// its CA (--ca-file) and the realm must be https.
package registryauth
