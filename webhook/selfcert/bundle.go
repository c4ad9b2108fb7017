package selfcert

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/cert-controller/pkg/rotator"
)

// ca is one CA certificate of a bundle.
type ca struct {
	cert *x509.Certificate
	fp   string // SHA-256 of the DER, hex
}

func newCA(c *x509.Certificate) ca {
	sum := sha256.Sum256(c.Raw)
	return ca{cert: c, fp: hex.EncodeToString(sum[:])}
}

func (c ca) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
}

func (c ca) expired(now time.Time) bool { return !now.Before(c.cert.NotAfter) }

// short is the fingerprint's start, for logs.
func (c ca) short() string { return c.fp[:12] }

// parseBundle reads the CA certificates of a caBundle; anything else in it
// (another block, a certificate that does not parse or is no CA) is left out.
func parseBundle(data []byte) []ca {
	var out []ca
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil || !c.IsCA {
			continue
		}
		out = append(out, newCA(c))
	}
}

func encodeBundle(cas []ca) []byte {
	var b bytes.Buffer
	for _, c := range cas {
		b.Write(c.pem())
	}
	return b.Bytes()
}

func names(cas []ca) string {
	s := make([]string, len(cas))
	for i, c := range cas {
		s[i] = c.short()
	}
	return strings.Join(s, ",")
}

// pair is the serving certificate and key of the Secret, with its CA (the
// first certificate of ca.crt, the one cert-controller signs with).
type pair struct {
	ca        ca
	leaf      *x509.Certificate
	cert, key []byte

	art *rotator.KeyPairArtifacts // tests: the CA's key
}

// parsePair reads and checks the Secret's data: the key matches the
// certificate, which chains to the CA, names dnsName and is valid at now.
// An error means cert-controller has not (re)filled the Secret yet.
func parsePair(data map[string][]byte, certKey, keyKey, dnsName string, now time.Time) (*pair, error) {
	cas := parseBundle(data[secretCAKey])
	if len(cas) == 0 {
		return nil, fmt.Errorf("no CA in %s", secretCAKey)
	}
	kp, err := tls.X509KeyPair(data[certKey], data[keyKey])
	if err != nil {
		return nil, fmt.Errorf("%s and %s: %w", certKey, keyKey, err)
	}
	leaf, err := x509.ParseCertificate(kp.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certKey, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cas[0].cert)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: dnsName, Roots: roots, CurrentTime: now}); err != nil {
		return nil, fmt.Errorf("%s: %w", certKey, err)
	}
	return &pair{ca: cas[0], leaf: leaf, cert: data[certKey], key: data[keyKey]}, nil
}

// stored is what the API server was given: the caBundle of each webhook of
// our configuration.
type stored [][]ca

// inAll: fp is in every webhook's bundle.
func (s stored) inAll(fp string) bool {
	if len(s) == 0 {
		return false
	}
	for _, b := range s {
		if !slices.ContainsFunc(b, func(c ca) bool { return c.fp == fp }) {
			return false
		}
	}
	return true
}

// valid is every CA of any webhook's bundle that has not expired, once each.
func (s stored) valid(now time.Time) []ca {
	var out []ca
	for _, b := range s {
		for _, c := range b {
			if !c.expired(now) && !slices.ContainsFunc(out, func(o ca) bool { return o.fp == c.fp }) {
				out = append(out, c)
			}
		}
	}
	return out
}

// equal: every webhook's bundle is exactly want.
func (s stored) equal(want []byte, raw [][]byte) bool {
	for _, r := range raw {
		if !bytes.Equal(r, want) {
			return false
		}
	}
	return len(raw) > 0
}

// timing is the order of a CA rotation.
type timing struct {
	// Propagation: a CA must have been in the caBundle this long before a
	// certificate it signed is served (the API server reads webhook
	// configurations through an informer, so a change reaches it a moment
	// after it is stored).
	Propagation time.Duration
	// Retire: a superseded CA stays in the caBundle until the current one
	// has been there this long and is served.
	Retire time.Duration
}

// trust is what one replica knows about the caBundle: since when it has
// seen each CA in every webhook's bundle. It forgets a CA that leaves the
// bundle: if it comes back, the API server must be given time again.
type trust struct {
	timing
	seen map[string]time.Time
}

func (t *trust) observe(s stored, now time.Time) {
	if t.seen == nil {
		t.seen = map[string]time.Time{}
	}
	for fp := range t.seen {
		if !s.inAll(fp) {
			delete(t.seen, fp)
		}
	}
	for _, b := range s {
		for _, c := range b {
			if _, ok := t.seen[c.fp]; !ok && s.inAll(c.fp) {
				t.seen[c.fp] = now
			}
		}
	}
}

// trusted: the API server uses c. Either c has been in every webhook's
// bundle for Propagation, or it is the only valid CA there (nothing else
// could be served successfully, so there is nothing to wait for).
func (t *trust) trusted(s stored, c ca, now time.Time) bool {
	if !s.inAll(c.fp) {
		return false
	}
	if v := s.valid(now); len(v) == 1 && v[0].fp == c.fp {
		return true
	}
	since, ok := t.seen[c.fp]
	return ok && now.Sub(since) >= t.Propagation
}

// trustedIn is how long until trusted(c) may turn true (0: it is, or it
// never will by waiting).
func (t *trust) trustedIn(s stored, c ca, now time.Time) time.Duration {
	since, ok := t.seen[c.fp]
	if !ok || t.trusted(s, c, now) {
		return 0
	}
	return since.Add(t.Propagation).Sub(now)
}

// desired is the caBundle for the Secret's CA current, given what is
// stored and what this replica serves: current (added if missing: the only
// CA ever added) and the other valid CAs already there, newest first (one
// order whichever replica writes it). The older ones are dropped once
// current is trusted, served here, and has been in the bundle for Retire (a
// newer one stays: another replica saw the Secret change first); an
// expired CA is dropped at once.
func (t *trust) desired(s stored, current ca, served *ca, now time.Time) []ca {
	since, seen := t.seen[current.fp]
	retire := served != nil && served.fp == current.fp && t.trusted(s, current, now) &&
		seen && now.Sub(since) >= t.Retire
	out := []ca{current}
	for _, c := range s.valid(now) {
		if c.fp != current.fp && (!retire || c.cert.NotBefore.After(current.cert.NotBefore)) {
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b ca) int {
		if d := b.cert.NotBefore.Compare(a.cert.NotBefore); d != 0 {
			return d
		}
		return strings.Compare(a.fp, b.fp)
	})
	return out
}

// retireIn is how long until desired drops the superseded CAs (0: nothing
// to wait for).
func (t *trust) retireIn(s stored, current ca, now time.Time) time.Duration {
	since, ok := t.seen[current.fp]
	if !ok || len(s.valid(now)) <= 1 {
		return 0
	}
	if d := since.Add(t.Retire).Sub(now); d > 0 {
		return d
	}
	return 0
}

// switchTo: whether to serve the Secret's pair p instead of what is served
// (served is nil before the first certificate). A new certificate under the
// CA already served is safe at once; under a new CA only once the API
// server uses it, unless what is served is no longer trusted anyway.
func (t *trust) switchTo(s stored, p *pair, served *servedCert, now time.Time) bool {
	switch {
	case served == nil:
		return true
	case bytes.Equal(served.leaf.Raw, p.leaf.Raw):
		return false
	case served.ca.fp == p.ca.fp:
		return true
	case t.trusted(s, p.ca, now):
		return true
	case !s.inAll(served.ca.fp), !now.Before(served.leaf.NotAfter):
		return s.inAll(p.ca.fp)
	}
	return false
}

// servedCert is what this replica has written into its certificate
// directory.
type servedCert struct {
	ca   ca
	leaf *x509.Certificate
}

// errNotServing is the readiness answer before the first certificate.
var errNotServing = errors.New("no serving certificate yet")

// ready: a certificate is in place, valid, and its CA is in the caBundle
// the API server uses.
func (t *trust) ready(s stored, served *servedCert, now time.Time) error {
	switch {
	case served == nil:
		return errNotServing
	case !now.Before(served.leaf.NotAfter):
		return fmt.Errorf("the serving certificate expired at %s", served.leaf.NotAfter.Format(time.RFC3339))
	case !s.inAll(served.ca.fp):
		return fmt.Errorf("the CA %s of the serving certificate is not in the caBundle", served.ca.short())
	case !t.trusted(s, served.ca, now):
		return fmt.Errorf("the CA %s of the serving certificate is in the caBundle for less than %s", served.ca.short(), t.Propagation)
	}
	return nil
}
