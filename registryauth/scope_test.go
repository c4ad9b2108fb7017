package registryauth

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseScope(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Scope
		err  string
	}{
		{in: "repository:team-a/build:pull,push", want: Scope{Type: "repository", Name: "team-a/build", Actions: []string{"pull", "push"}}},
		{in: "repository:p/ns/uid/ws:pull", want: Scope{Type: "repository", Name: "p/ns/uid/ws", Actions: []string{"pull"}}},
		{in: "registry:catalog:*", want: Scope{Type: "registry", Name: "catalog", Actions: []string{"*"}}},
		{in: "repository(plugin):x/y:pull", want: Scope{Type: "repository", Class: "plugin", Name: "x/y", Actions: []string{"pull"}}},
		// A name may hold a registry host and port: the actions are after the last ':'.
		{in: "repository:localhost:5000/a/b:push", want: Scope{Type: "repository", Name: "localhost:5000/a/b", Actions: []string{"push"}}},
		{in: "repository:a:pull,,push,", want: Scope{Type: "repository", Name: "a", Actions: []string{"pull", "push"}}},
		{in: "repository:a:delete", want: Scope{Type: "repository", Name: "a", Actions: []string{"delete"}}},

		{in: "", err: "want type:name:actions"},
		{in: "repository", err: "want type:name:actions"},
		{in: "repository:a", err: "want type:name:actions"},
		{in: "repository::pull", err: "empty resource name"},
		{in: "Repository:a:pull", err: "resource type"},
		{in: "repository():a:pull", err: "resource type"},
		{in: "repo(x)(y):a:pull", err: "resource type"},
		{in: ":a:pull", err: "resource type"},
		{in: "repository:a:", err: "no action"},
		{in: "repository:a:,", err: "no action"},
		{in: "repository:a:PULL", err: `action "PULL"`},
		{in: "repository:a:pu ll", err: `action "pu ll"`},
		{in: "repository:a:**", err: `action "**"`},
		{in: "repository:a\tb:pull", err: "resource name holds"},
		{in: "repository:a,b:pull", err: "resource name holds"},
		{in: "repository:" + strings.Repeat("a", maxScopeLen) + ":pull", err: "over"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseScope(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseScopes(t *testing.T) {
	// Repeated parameters (the token flow) and space-separated ones (OAuth2).
	got, err := ParseScopes([]string{"repository:a/b:pull repository:a/c:push", "registry:catalog:*", "  "})
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, "repository:a/c:push", got[1].String())

	got, err = ParseScopes(nil)
	require.NoError(t, err)
	require.Empty(t, got, "no scope: a token for /v2/ only")

	_, err = ParseScopes([]string{"repository:a:pull", "nonsense", "repository::pull"})
	require.ErrorContains(t, err, `"nonsense"`)
	require.ErrorContains(t, err, "empty resource name", "every bad scope is reported")

	_, err = ParseScopes([]string{strings.Repeat("repository:a:pull ", maxScopes+1)})
	require.ErrorContains(t, err, "more than 32 scopes")
}

func TestAuthorize(t *testing.T) {
	scopes := func(s ...string) []Scope {
		t.Helper()
		out, err := ParseScopes(s)
		require.NoError(t, err)
		return out
	}
	pp := []string{"pull", "push"}
	for _, tc := range []struct {
		name, prefix, ns string
		req              []Scope
		want             []Access
	}{
		{
			name: "own namespace: what was asked", prefix: "tekton-oci-transport", ns: "team-a",
			req:  scopes("repository:tekton-oci-transport/team-a/0b5e/git:pull,push"),
			want: []Access{{"repository", "tekton-oci-transport/team-a/0b5e/git", pp}},
		},
		{
			name: "own namespace: pull only when only pull was asked", prefix: "tekton-oci-transport", ns: "team-a",
			req:  scopes("repository:tekton-oci-transport/team-a/u/w:pull"),
			want: []Access{{"repository", "tekton-oci-transport/team-a/u/w", []string{"pull"}}},
		},
		{
			name: "another namespace: nothing", prefix: "tekton-oci-transport", ns: "team-a",
			req:  scopes("repository:tekton-oci-transport/team-b/u/w:pull,push"),
			want: []Access{},
		},
		{
			name: "a namespace whose name starts like ours: nothing", prefix: "tekton-oci-transport", ns: "team",
			req:  scopes("repository:tekton-oci-transport/team-a/u/w:pull", "repository:tekton-oci-transport/teamx:pull"),
			want: []Access{},
		},
		{
			name: "the namespace root itself and the prefix: nothing", prefix: "tekton-oci-transport", ns: "team-a",
			req:  scopes("repository:tekton-oci-transport/team-a:pull", "repository:tekton-oci-transport:pull"),
			want: []Access{},
		},
		{
			name: "outside the prefix: nothing", prefix: "tekton-oci-transport", ns: "team-a",
			req:  scopes("repository:team-a/u/w:pull", "repository:other/team-a/u/w:pull"),
			want: []Access{},
		},
		{
			name: "catalog, delete and * are never granted", prefix: "p", ns: "a",
			req:  scopes("registry:catalog:*", "repository:p/a/u/w:delete", "repository:p/a/u/v:*", "repository:p/a/u/x:delete,pull"),
			want: []Access{{"repository", "p/a/u/x", []string{"pull"}}},
		},
		{
			name: "a resource class is not a repository", prefix: "p", ns: "a",
			req:  scopes("repository(plugin):p/a/u/w:pull"),
			want: []Access{},
		},
		{
			name: "names no registry takes are not granted", prefix: "p", ns: "a",
			req: scopes("repository:p/a/U/w:pull", "repository:p/a/../b/w:pull", "repository:p/a//w:pull",
				"repository:p/a/w/:pull", "repository:localhost:5000/p/a/w:pull", "repository:p/a/-w:pull"),
			want: []Access{},
		},
		{
			name: "scopes of one name are merged, names sorted", prefix: "p", ns: "a",
			req:  scopes("repository:p/a/z:push", "repository:p/a/b:pull", "repository:p/a/z:pull,push"),
			want: []Access{{"repository", "p/a/b", []string{"pull"}}, {"repository", "p/a/z", pp}},
		},
		{
			name: "no prefix: the namespace is the root", prefix: "", ns: "a",
			req:  scopes("repository:a/u/w:pull", "repository:b/u/w:pull"),
			want: []Access{{"repository", "a/u/w", []string{"pull"}}},
		},
		{
			name: "a prefix with slashes around it is trimmed, as transform does", prefix: "/x/y/", ns: "a",
			req:  scopes("repository:x/y/a/u/w:push"),
			want: []Access{{"repository", "x/y/a/u/w", []string{"push"}}},
		},
		{
			name: "a namespace that is no DNS label gets nothing", prefix: "p", ns: "A",
			req:  scopes("repository:p/A/u/w:pull"),
			want: []Access{},
		},
		{
			name: "no scope, no access", prefix: "p", ns: "a",
			want: []Access{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, Authorize(tc.prefix, tc.ns, tc.req))
		})
	}
}

func TestValidRepository(t *testing.T) {
	for name, ok := range map[string]bool{
		"a": true, "a/b": true, "a-b/c.d/e__f/g_h": true, "a--b": true,
		"": false, "A": false, "a/": false, "/a": false, "a//b": false, "a/../b": false, "a..b": false,
		"a___b": false, "-a": false, "a:b": false, strings.Repeat("a", 256): false,
	} {
		require.Equal(t, ok, ValidRepository(name), name)
	}
}

// FuzzParseScope: the parser never panics, what it accepts prints back to
// itself, and Authorize grants only pull and push under the namespace root.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{
		"repository:tekton-oci-transport/a/u/w:pull,push", "registry:catalog:*", "repository(plugin):x:pull",
		"repository:localhost:5000/a:push", "repository:a:pull,,push", "::", "a:b:c:d", "repository:a/../b:pull",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sc, err := ParseScope(s)
		if err != nil {
			return
		}
		again, err := ParseScope(sc.String())
		if err != nil {
			t.Fatalf("%q parsed as %+v, whose String %q does not parse: %v", s, sc, sc.String(), err)
		}
		require.Equal(t, sc, again)
		if sc.Name == "" || len(sc.Actions) == 0 || strings.ContainsAny(sc.Name, " \t\n,") {
			t.Fatalf("%q parsed as %+v", s, sc)
		}
		for _, a := range Authorize("p", "ns", []Scope{sc}) {
			if a.Type != "repository" || !strings.HasPrefix(a.Name, "p/ns/") || !ValidRepository(a.Name) {
				t.Fatalf("%q granted %+v", s, a)
			}
			for _, act := range a.Actions {
				if act != "pull" && act != "push" {
					t.Fatalf("%q granted action %q", s, act)
				}
			}
		}
	})
}
