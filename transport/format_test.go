package transport

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDeltaConfigKeepsBytes(t *testing.T) {
	for _, tc := range []struct {
		name        string
		in          deltaConfig
		wantVersion int
	}{
		{"empty", deltaConfig{}, 1},
		{"utf-8 only", deltaConfig{Deletions: []string{"a/b", "naïve"}, Symlinks: map[string]string{"cur": "releases/v1"}}, 1},
		{"latin-1 deletion", deltaConfig{Deletions: []string{"ok", "caf\xe9.txt"}}, 2},
		{"symlink name not utf-8", deltaConfig{Symlinks: map[string]string{"link-\xff": "target", "plain": "t"}}, 2},
		{"symlink target not utf-8", deltaConfig{Symlinks: map[string]string{"link": "\xfe\xff"}}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.in)
			require.NoError(t, err)
			require.True(t, json.Valid(b))
			var got deltaConfig
			require.NoError(t, json.Unmarshal(b, &got))
			require.Equal(t, tc.wantVersion, got.Version)
			require.ElementsMatch(t, tc.in.Deletions, got.Deletions)
			if len(tc.in.Symlinks) == 0 {
				require.Empty(t, got.Symlinks)
			} else {
				require.Equal(t, tc.in.Symlinks, got.Symlinks)
			}
		})
	}
}

func TestDeltaConfigRefusals(t *testing.T) {
	for name, doc := range map[string]string{
		"a newer version":         `{"version":3,"deletions":[]}`,
		"raw deletion not base64": `{"version":2,"deletions":[],"rawDeletions":["%%%"]}`,
		"raw symlink not base64":  `{"version":2,"deletions":[],"rawSymlinks":[["bGluaw==","***"]]}`,
		"raw symlink not a pair":  `{"version":2,"deletions":[],"rawSymlinks":[["bGluaw=="]]}`,
	} {
		t.Run(name, func(t *testing.T) {
			var c deltaConfig
			require.Error(t, json.Unmarshal([]byte(doc), &c))
		})
	}
}

// Version 1 configs, which every step before non-UTF-8 support wrote, read
// as before.
func TestDeltaConfigVersion1(t *testing.T) {
	var c deltaConfig
	require.NoError(t, json.Unmarshal([]byte(`{"version":1,"deletions":["a","b/c"],"symlinks":{"cur":"v1"}}`), &c))
	require.Equal(t, deltaConfig{Version: 1, Deletions: []string{"a", "b/c"}, Symlinks: map[string]string{"cur": "v1"}}, c)
}

// Any byte string is a Linux name: a delta config must give back exactly
// the deletions and symlinks it was given, and stay valid JSON.
func FuzzDeltaConfigRoundTrip(f *testing.F) {
	f.Add("caf\xe9.txt", "link", "releases/v1")
	f.Add("a/b", "\xff\xfe", "t\x00")
	f.Add("", "", "")
	f.Fuzz(func(t *testing.T, deletion, link, target string) {
		in := deltaConfig{Deletions: []string{deletion, "plain"}, Symlinks: map[string]string{link: target, "l": "t"}}
		b, err := json.Marshal(in)
		require.NoError(t, err)
		require.True(t, json.Valid(b))
		var got deltaConfig
		require.NoError(t, json.Unmarshal(b, &got))
		require.ElementsMatch(t, in.Deletions, got.Deletions)
		require.Equal(t, in.Symlinks, got.Symlinks)
	})
}
