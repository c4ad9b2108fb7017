package transport

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDefaultDockerConfig(t *testing.T) {
	home, explicit := t.TempDir(), t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("DOCKER_CONFIG", explicit)
	require.Empty(t, DefaultDockerConfig(), "no file anywhere: no credentials")

	homeFile := filepath.Join(home, ".docker", "config.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(homeFile), 0o755))
	require.NoError(t, os.WriteFile(homeFile, []byte("{}"), 0o600))
	require.Equal(t, homeFile, DefaultDockerConfig(), "Tekton's copy in $HOME/.docker")

	explicitFile := filepath.Join(explicit, "config.json")
	require.NoError(t, os.WriteFile(explicitFile, []byte("{}"), 0o600))
	require.Equal(t, explicitFile, DefaultDockerConfig(), "$DOCKER_CONFIG wins")
}
