package offline

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"

	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform/params"
	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrNotFound is returned when a reference matches no supplied object.
var ErrNotFound = errors.New("not found among the supplied objects")

// Resolve finds, among docs, the Pipeline the run references (if it has a
// pipelineRef) and the Tasks that transform needs, the way a user would
// expect from files:
//   - by kind and name for a plain ref and for the cluster, hub and bundles
//     resolvers (their `name` param);
//   - for the git and http resolvers, by the file name at the end of
//     `pathInRepo` / `url`, matched to the base name of a supplied file.
//
// Resolver params are substituted as Tekton does (package params: the run's
// params, and the pipeline's defaults for task refs) before matching, and
// recorded in each Source.
//
// It resolves all it can: the error joins every reference it could not
// resolve, and the returned Resolved holds the rest (transform reports what
// is missing as a reason to leave the run unchanged).
func Resolve(run *v1.PipelineRun, docs []Document) (transform.Resolved, error) {
	var resolved transform.Resolved
	spec := run.Spec.PipelineSpec
	if ref := run.Spec.PipelineRef; ref != nil && spec == nil {
		doc, src, err := find(docs, "Pipeline", ref.Name, ref.ResolverRef, params.Replacements(run, nil))
		if err != nil {
			return resolved, fmt.Errorf("pipelineRef of PipelineRun %q: %w", run.Name, err)
		}
		p := doc.Object.(*v1.Pipeline)
		resolved.Pipeline = &transform.ResolvedPipeline{Spec: p.Spec, Source: src, Meta: transform.MetaOf(p.ObjectMeta)}
		spec = &p.Spec
	}
	if spec == nil {
		return resolved, nil
	}
	replacements := params.Replacements(run, spec)
	var errs []error
	for _, pt := range transform.TasksNeeded(run, spec) {
		kind := string(pt.TaskRef.Kind)
		if kind == "" {
			kind = "Task"
		}
		doc, src, err := find(docs, "Task", pt.TaskRef.Name, pt.TaskRef.ResolverRef, replacements)
		if err != nil {
			errs = append(errs, fmt.Errorf("taskRef of pipeline task %q: %w", pt.Name, err))
			continue
		}
		src.Kind = kind
		if resolved.Tasks == nil {
			resolved.Tasks = map[string]transform.ResolvedTask{}
		}
		task := doc.Object.(*v1.Task)
		resolved.Tasks[pt.Name] = transform.ResolvedTask{Spec: task.Spec, Source: src, Meta: transform.MetaOf(task.ObjectMeta)}
	}
	return resolved, errors.Join(errs...)
}

func find(docs []Document, kind, name string, rr v1.ResolverRef, replacements map[string]string) (Document, transform.Source, error) {
	src := transform.Source{Kind: kind, Name: name, Resolver: string(rr.Resolver)}
	substituted, err := params.Substitute(rr.Params, replacements)
	if err != nil {
		return Document{}, src, err
	}
	src.Params = params.Map(substituted)
	resolverParams := src.Params

	var match func(Document) bool
	var what string
	switch rr.Resolver {
	case "":
		what = fmt.Sprintf("%s %q", kind, name)
		match = func(d Document) bool { return objectName(d) == name }
	case "cluster", "hub", "bundles":
		src.Name = resolverParams["name"]
		what = fmt.Sprintf("%s %q (resolver %s)", kind, src.Name, rr.Resolver)
		match = func(d Document) bool { return src.Name != "" && objectName(d) == src.Name }
	case "git", "http":
		loc := resolverParams["pathInRepo"]
		if rr.Resolver == "http" {
			loc = resolverParams["url"]
		}
		base := path.Base(strings.TrimRight(loc, "/"))
		what = fmt.Sprintf("%s in %q (resolver %s; supply a file named %s)", kind, loc, rr.Resolver, base)
		match = func(d Document) bool { return loc != "" && filepath.Base(d.File) == base }
	default:
		return Document{}, src, fmt.Errorf("resolver %q cannot be resolved offline", rr.Resolver)
	}

	var found []Document
	for _, d := range docs {
		if d.Object.GetObjectKind().GroupVersionKind().Kind == kind && match(d) {
			found = append(found, d)
		}
	}
	switch len(found) {
	case 0:
		return Document{}, src, fmt.Errorf("%s: %w", what, ErrNotFound)
	case 1:
		d := found[0]
		src.Digest = map[string]string{"sha256": d.Digest}
		src.URI = d.File
		return d, src, nil
	default:
		return Document{}, src, fmt.Errorf("%s: %d supplied objects match (%s document %d and %s document %d)", what, len(found), found[0].File, found[0].Index, found[1].File, found[1].Index)
	}
}

func objectName(d Document) string {
	if m, ok := d.Object.(metav1.ObjectMetaAccessor); ok {
		return m.GetObjectMeta().GetName()
	}
	return ""
}
