package registryauth

import (
	"context"
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
)

func TestZot(t *testing.T) {
	needSuite(t)
	r := startZot(t, suite.tokenURL, suite.bundle)
	stepsAgainst(t, r)
}

func TestDistribution(t *testing.T) {
	needSuite(t)
	r := startDistribution(t, suite.tokenURL, suite.bundle)
	stepsAgainst(t, r)
}

// stepsAgainst runs the step's transport with ServiceAccount token files,
// as the injected steps do: team-a pushes and pulls its own repository,
// and is refused team-b's with a message that says why; team-b cannot read
// team-a's; nobody lists the catalog.
func stepsAgainst(t *testing.T, r *testenv.Registry) {
	ctx := context.Background()
	fileA := tokenFile(t, saToken(t, teamA, suite.pods[teamA], registryauth.DefaultAudience))
	fileB := tokenFile(t, saToken(t, teamB, suite.pods[teamB], registryauth.DefaultAudience))
	opts := func(repo, tokenFile string) transport.Options {
		return transport.Options{Registry: r.Addr(), Repository: repo, PlainHTTP: true, TokenFile: tokenFile,
			Retries: 1, RetryBaseDelay: 10 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
	}
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "out.txt"), []byte("built by team-a\n"), 0o644))
	push := func(repo, tokenFile string) error {
		_, err := transport.Push(ctx, transport.PushOptions{Options: opts(repo, tokenFile), Tag: "build", Task: "build",
			Mounts: []transport.Mount{{Dir: src}}, StateDir: t.TempDir()})
		return err
	}
	pull := func(repo, tokenFile string) (string, error) {
		dst := t.TempDir()
		_, err := transport.Pull(ctx, transport.PullOptions{Options: opts(repo, tokenFile), From: []string{"build"},
			Mounts: []transport.Mount{{Dir: dst}}, StateDir: t.TempDir()})
		return dst, err
	}

	require.NoError(t, push(repoA, fileA), "team-a pushes to its own repository\n%s", r.Logs())
	dst, err := pull(repoA, fileA)
	require.NoError(t, err, "team-a pulls its own repository")
	got, err := os.ReadFile(filepath.Join(dst, "out.txt"))
	require.NoError(t, err)
	require.Equal(t, "built by team-a\n", string(got))

	err = push(repoB, fileA)
	var denied *transport.RegistryDeniedError
	require.ErrorAs(t, err, &denied, "team-a pushes to team-b's repository: %v", err)
	require.ErrorContains(t, err, "the registry refused access to repository "+repoB)
	require.ErrorContains(t, err, "only on its own namespace's repositories")
	require.Equal(t, transport.ExitFailed, transport.ExitCode(err))
	t.Logf("team-a pushing to team-b's repository: %v", err)

	_, err = pull(repoA, fileB)
	require.ErrorAs(t, err, &denied, "team-b reads team-a's artifacts: %v", err)

	// A token the token service refuses: its reason reaches the step.
	err = push(repoA, tokenFile(t, aliceToken))
	require.ErrorContains(t, err, "ServiceAccount token refused")
	require.ErrorContains(t, err, `user "alice" is not a ServiceAccount`)
	t.Logf("a person's token: %v", err)

	// The catalog: asked for, not granted, refused by the registry.
	cat := requestToken(t, suite.tokenURL, suite.bundle, saToken(t, teamA, suite.pods[teamA], registryauth.DefaultAudience), "registry:catalog:*")
	require.Equal(t, http.StatusOK, cat.status)
	require.Equal(t, http.StatusUnauthorized, registryGet(t, r, "/v2/_catalog", cat.token))

	// A team-a token with pull only: the registry refuses a push (an
	// upload is a push) and serves the pull.
	pullOnly := requestToken(t, suite.tokenURL, suite.bundle, saToken(t, teamA, suite.pods[teamA], registryauth.DefaultAudience), "repository:"+repoA+":pull")
	require.Equal(t, http.StatusOK, registryGet(t, r, "/v2/"+repoA+"/tags/list", pullOnly.token))
	req, err := http.NewRequest(http.MethodPost, "http://"+r.Addr()+"/v2/"+repoA+"/blobs/uploads/", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+pullOnly.token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Equal(t, http.StatusUnauthorized, registryGet(t, r, "/v2/"+repoB+"/tags/list", pullOnly.token))
}
