package transport

import (
	"strings"
	"testing"
)

// Tags follow the distribution spec's grammar (oras-go's): what a registry
// would refuse is refused before anything is pushed.
func TestValidTag(t *testing.T) {
	for tag, want := range map[string]bool{
		"build":                             true,
		"build.0":                           true,
		"_x":                                true,
		"A-b_c.d":                           true,
		strings.Repeat("a", 128):            true,
		strings.Repeat("a", 129):            false,
		"":                                  false,
		".build":                            false,
		"-build":                            false,
		"build:1":                           false,
		"build/1":                           false,
		"sha256:" + strings.Repeat("0", 64): false,
		"bu ild":                            false,
	} {
		if got := ValidTag(tag); got != want {
			t.Errorf("ValidTag(%q) = %v, want %v", tag, got, want)
		}
	}
}
