package offline

import (
	"context"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/params"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/resolution"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrNotFound is wrapped when a reference matches no supplied object
// (resolution words the message of a named one, as the webhook's).
var ErrNotFound = resolution.ErrNotFound

// Resolve finds, among docs, the Pipeline the run references (if it has a
// pipelineRef) and the Tasks that transform needs, through package
// resolution as the webhook does (the same substitutions, refusals and
// reasons); only reading a reference is offline (Files).
//
// It resolves all it can: the error joins every reference it could not
// resolve, and the returned Resolved holds the rest.
func Resolve(run *v1.PipelineRun, docs []Document) (transform.Resolved, error) {
	return resolution.Resolve(context.Background(), run, Files(docs))
}

// Files reads references from supplied documents, the way a user would
// expect from files:
//   - by kind and name for a plain reference and for the cluster resolver
//     (a document with a namespace only for that namespace; one without is
//     taken as in the run's namespace, as `kubectl apply` would create it);
//   - by the `name` param for the hub and bundles resolvers;
//   - for the git and http resolvers, by the file name at the end of
//     `pathInRepo` / `url`, matched to the base name of a supplied file.
//
// A reference that matches nothing is a resolution.ReasonNotFound (the
// webhook leaves such a run unchanged); two matches, or a resolver that
// cannot be read offline, are a bad input.
type Files []Document

func (fs Files) Fetch(_ context.Context, ref resolution.Reference) (any, resolution.Origin, error) {
	match, what, remote, err := matcher(ref)
	if err != nil {
		return nil, resolution.Origin{}, err
	}
	var found []Document
	for _, d := range fs {
		if d.Object.GetObjectKind().GroupVersionKind().Kind == ref.Kind && match(d) {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return nil, resolution.Origin{}, &resolution.Error{Reason: resolution.ReasonNotFound, Err: fmt.Errorf("%s: %w among the supplied objects", what, ErrNotFound)}
	case 1:
		var origin resolution.Origin
		if remote {
			// What a resolver's refSource says: where the document is, and
			// its digest. Objects read by name have none, in the webhook too.
			origin = resolution.Origin{URI: found[0].File, Digest: map[string]string{"sha256": found[0].Digest}}
		}
		return found[0].Object, origin, nil
	default:
		return nil, resolution.Origin{}, fmt.Errorf("%s: %d supplied objects match (%s document %d and %s document %d)", what, len(found), found[0].File, found[0].Index, found[1].File, found[1].Index)
	}
}

// matcher returns how documents are matched to ref, how to name ref in an
// error, and whether ref goes through a remote resolver.
func matcher(ref resolution.Reference) (func(Document) bool, string, bool, error) {
	resolverParams := params.Map(ref.Params)
	switch ref.Resolver {
	case "", "cluster":
		what := fmt.Sprintf("%s %q", ref.Kind, ref.Name)
		if ref.Resolver != "" {
			what = fmt.Sprintf("%s %s/%s (resolver cluster)", ref.Kind, ref.Namespace, ref.Name)
		}
		return func(d Document) bool {
			ns := objectMeta(d).GetNamespace()
			return objectMeta(d).GetName() == ref.Name && (ns == ref.Namespace || (ns == "" && ref.Namespace == ref.RunNamespace))
		}, what, false, nil
	case "hub", "bundles":
		name := resolverParams["name"]
		return func(d Document) bool { return name != "" && objectMeta(d).GetName() == name },
			fmt.Sprintf("%s %q (resolver %s)", ref.Kind, name, ref.Resolver), true, nil
	case "git", "http":
		loc := resolverParams["pathInRepo"]
		if ref.Resolver == "http" {
			loc = resolverParams["url"]
		}
		base := path.Base(strings.TrimRight(loc, "/"))
		return func(d Document) bool { return loc != "" && filepath.Base(d.File) == base },
			fmt.Sprintf("%s in %q (resolver %s; supply a file named %s)", ref.Kind, loc, ref.Resolver, base), true, nil
	default:
		return nil, "", false, fmt.Errorf("resolver %q cannot be resolved offline", ref.Resolver)
	}
}

func objectMeta(d Document) metav1.Object {
	if m, ok := d.Object.(metav1.ObjectMetaAccessor); ok {
		return m.GetObjectMeta()
	}
	return &metav1.ObjectMeta{}
}
