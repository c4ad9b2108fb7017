package registryauth

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/internal/testenv"
	"github.com/tekton-oci-transport/tekton-oci-transport/registryauth"
	"github.com/tekton-oci-transport/tekton-oci-transport/transport"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A key rotation as the package documents it, against both registries:
// Stage publishes the next key and nothing changes for anyone; after
// Promote, Distribution (several certificates) accepts the tokens of both
// keys, zot (one certificate) the new key's once restarted; Retire ends
// the old key's tokens.
func TestKeyRotation(t *testing.T) {
	needSuite(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const name = "rotation-keys"
	require.NoError(t, grantServiceRBAC(ctx, "tekton-oci-transport-webhook", name))
	svc, err := startService(ctx, name, 100*time.Millisecond)
	require.NoError(t, err)
	secrets := suite.admin.CoreV1().Secrets(release)
	bundle := filepath.Join(t.TempDir(), "bundle.pem")
	// publish writes what the Secret's bundle.pem holds where the
	// registries read it (the kubelet's part) and returns the kids in order.
	publish := func() []string {
		sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(bundle, sec.Data[registryauth.SecretBundle], 0o644))
		var kids []string
		for rest := sec.Data[registryauth.SecretBundle]; ; {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			c, err := x509.ParseCertificate(b.Bytes)
			require.NoError(t, err)
			kids = append(kids, registryauth.Thumbprint(c.PublicKey))
		}
		return kids
	}
	first := publish()
	require.Len(t, first, 1)
	zot := startZot(t, svc.url, bundle)
	dist := startDistribution(t, svc.url, bundle)

	file := tokenFile(t, saToken(t, teamA, suite.pods[teamA], registryauth.DefaultAudience))
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644))
	tag := 0
	push := func(r *testenv.Registry) error {
		tag++
		_, err := transport.Push(ctx, transport.PushOptions{
			Options: transport.Options{Registry: r.Addr(), Repository: repoA, PlainHTTP: true, TokenFile: file,
				Retries: 0, Log: slog.New(slog.DiscardHandler)},
			Tag: fmt.Sprintf("t%d", tag), Task: "t", Mounts: []transport.Mount{{Dir: src}}, StateDir: t.TempDir()})
		return err
	}
	registryToken := func() string {
		got := requestToken(t, svc.url, bundle, saToken(t, teamA, suite.pods[teamA], registryauth.DefaultAudience), "repository:"+repoA+":pull")
		require.Equal(t, http.StatusOK, got.status)
		return got.token
	}
	tags := "/v2/" + repoA + "/tags/list"
	signsWith := func(kid string) {
		require.Eventually(t, func() bool { return svc.svc.Keys.Signing().KID == kid }, 10*time.Second, 50*time.Millisecond)
	}
	require.NoError(t, push(zot))
	require.NoError(t, push(dist))
	oldToken := registryToken()

	// Stage: the next key is published; the current one still signs.
	require.NoError(t, registryauth.Rotate(ctx, secrets, name, registryauth.DefaultIssuer, registryauth.Stage, time.Now()))
	staged := publish()
	require.Equal(t, first[0], staged[0])
	require.Len(t, staged, 2)
	restart(t, zot)
	restart(t, dist)
	time.Sleep(300 * time.Millisecond) // a few reloads
	signsWith(first[0])
	require.NoError(t, push(zot))
	require.NoError(t, push(dist))
	require.Equal(t, http.StatusOK, registryGet(t, zot, tags, oldToken))

	// Promote: every replica signs with the next key within its reload
	// interval. Distribution restarted at Stage knows it already, and the
	// tokens issued before still work there.
	require.NoError(t, registryauth.Rotate(ctx, secrets, name, registryauth.DefaultIssuer, registryauth.Promote, time.Now()))
	signsWith(staged[1])
	require.NoError(t, push(dist))
	require.Equal(t, http.StatusOK, registryGet(t, dist, tags, oldToken))
	require.Equal(t, http.StatusOK, registryGet(t, dist, tags, registryToken()))
	// zot trusts one certificate: the new key's tokens until it restarts...
	var denied *transport.RegistryDeniedError
	require.ErrorAs(t, push(zot), &denied, "zot still trusts only the first key")
	require.Equal(t, []string{staged[1], first[0]}, publish())
	restart(t, zot)
	require.NoError(t, push(zot))
	require.Equal(t, http.StatusUnauthorized, registryGet(t, zot, tags, oldToken), "...then only those")
	restart(t, dist)
	require.Equal(t, http.StatusOK, registryGet(t, dist, tags, oldToken), "in-flight tokens survive a restart with the promoted bundle")

	// Retire: the old key is gone from the bundle and its tokens with it.
	require.NoError(t, registryauth.Rotate(ctx, secrets, name, registryauth.DefaultIssuer, registryauth.Retire, time.Now()))
	require.Equal(t, []string{staged[1]}, publish())
	restart(t, dist)
	require.Equal(t, http.StatusUnauthorized, registryGet(t, dist, tags, oldToken))
	require.NoError(t, push(dist))
	require.NoError(t, push(zot))

	cancel()
	require.NoError(t, <-svc.err)
}
