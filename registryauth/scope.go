package registryauth

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Scope is one resource scope of a token request, as the registry's
// challenge names it: `repository:team-a/build:pull,push`,
// `registry:catalog:*`, `repository(plugin):x:pull`
// (https://distribution.github.io/distribution/spec/auth/scope/).
type Scope struct {
	Type    string   // "repository", "registry", ...
	Class   string   // the optional "(class)" after the type; "" when none
	Name    string   // may hold a registry host with a port, so ':' too
	Actions []string // as requested, in order, without empty ones
}

// String is the scope in its wire form.
func (s Scope) String() string {
	t := s.Type
	if s.Class != "" {
		t += "(" + s.Class + ")"
	}
	return t + ":" + s.Name + ":" + strings.Join(s.Actions, ",")
}

// maxScopeLen bounds one scope: a repository name is at most 255 bytes.
const maxScopeLen = 1024

var (
	typeRE   = regexp.MustCompile(`^([a-z0-9]+)(?:\(([a-z0-9]+)\))?$`)
	actionRE = regexp.MustCompile(`^(?:[a-z]+|\*)$`)
)

// ParseScope parses one scope. The type is everything up to the first ':',
// the actions everything after the last ':', the name what is between (a
// name may hold a registry host:port). It checks the form only; what is
// granted is Authorize's business.
func ParseScope(s string) (Scope, error) {
	if len(s) > maxScopeLen {
		return Scope{}, fmt.Errorf("scope of %d bytes is over %d", len(s), maxScopeLen)
	}
	typ, rest, ok := strings.Cut(s, ":")
	i := strings.LastIndexByte(rest, ':')
	if !ok || i < 0 {
		return Scope{}, fmt.Errorf("scope %q: want type:name:actions", s)
	}
	name, actions := rest[:i], rest[i+1:]
	m := typeRE.FindStringSubmatch(typ)
	if m == nil {
		return Scope{}, fmt.Errorf("scope %q: resource type %q is not [a-z0-9]+ with an optional (class)", s, typ)
	}
	if name == "" {
		return Scope{}, fmt.Errorf("scope %q: empty resource name", s)
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f || r == ',' {
			return Scope{}, fmt.Errorf("scope %q: resource name holds %q", s, r)
		}
	}
	sc := Scope{Type: m[1], Class: m[2], Name: name}
	for a := range strings.SplitSeq(actions, ",") {
		if a == "" {
			continue
		}
		if !actionRE.MatchString(a) {
			return Scope{}, fmt.Errorf("scope %q: action %q is not [a-z]+ or *", s, a)
		}
		sc.Actions = append(sc.Actions, a)
	}
	if len(sc.Actions) == 0 {
		return Scope{}, fmt.Errorf("scope %q: no action", s)
	}
	return sc, nil
}

// maxScopes bounds the scopes of one token request (a push asks for one or
// two; Docker clients for a handful).
const maxScopes = 32

// ParseScopes parses the scope parameters of a request: each value may
// hold several scopes separated by spaces (the OAuth2 form and some
// clients), or the parameter may be repeated (the token spec).
func ParseScopes(values []string) ([]Scope, error) {
	var out []Scope
	var errs []error
	for _, v := range values {
		for f := range strings.FieldsSeq(v) {
			if len(out) == maxScopes {
				return nil, fmt.Errorf("more than %d scopes", maxScopes)
			}
			sc, err := ParseScope(f)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			out = append(out, sc)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// Access is one entry of the token's `access` claim, in the form both
// CNCF Distribution and zot read.
type Access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// Grantable are the actions a run's ServiceAccount may get on its own
// namespace's repositories: the step lists tags, fetches and pushes, and
// never deletes (the registry's retention does).
var Grantable = []string{"pull", "push"}

// pathComponentRE is a path component of an OCI repository name
// (distribution/reference); a name is such components joined by '/'.
var pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$`)

// maxRepositoryLen is the longest repository name registries accept.
const maxRepositoryLen = 255

// ValidRepository reports whether name is an OCI repository name without a
// host: lower-case path components joined by '/'.
func ValidRepository(name string) bool {
	if name == "" || len(name) > maxRepositoryLen {
		return false
	}
	for c := range strings.SplitSeq(name, "/") {
		if !pathComponentRE.MatchString(c) {
			return false
		}
	}
	return true
}

// dnsLabelRE is a Kubernetes namespace name.
var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// NamespaceRoot is the repository path every run of namespace ns writes
// under, with a trailing '/': `<prefix>/<ns>/` (transform puts each run's
// repositories at <prefix>/<namespace>/<pipelinerun-uid>/<workspace>).
func NamespaceRoot(prefix, ns string) string {
	if p := strings.Trim(prefix, "/"); p != "" {
		return p + "/" + ns + "/"
	}
	return ns + "/"
}

// Authorize decides what a ServiceAccount of namespace ns gets for the
// requested scopes: pull and push (whichever were asked) on repositories
// under NamespaceRoot(prefix, ns), and nothing else: no other namespace's
// repositories, no catalog, no delete, no `*`. What it does not grant is
// left out, as the token spec says (the intersection of what was asked and
// what is allowed; an empty list is no error). Entries for the same name
// are merged, and the result is sorted by name.
func Authorize(prefix, ns string, requested []Scope) []Access {
	if !dnsLabelRE.MatchString(ns) {
		return []Access{}
	}
	root := NamespaceRoot(prefix, ns)
	granted := map[string][]string{}
	for _, sc := range requested {
		if sc.Type != "repository" || sc.Class != "" || !ValidRepository(sc.Name) ||
			!strings.HasPrefix(sc.Name, root) || len(sc.Name) == len(root) {
			continue
		}
		for _, a := range sc.Actions {
			if slices.Contains(Grantable, a) && !slices.Contains(granted[sc.Name], a) {
				granted[sc.Name] = append(granted[sc.Name], a)
			}
		}
	}
	out := make([]Access, 0, len(granted))
	for _, name := range slices.Sorted(maps.Keys(granted)) {
		actions := granted[name]
		slices.SortFunc(actions, func(a, b string) int { return slices.Index(Grantable, a) - slices.Index(Grantable, b) })
		out = append(out, Access{Type: "repository", Name: name, Actions: actions})
	}
	return out
}
