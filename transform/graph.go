package transform

import (
	"fmt"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipeline/dag"
)

// graph is the pipeline's DAG as Tekton builds it (runAfter and result
// references in params, when and matrix), with a deterministic topological
// order: Kahn's algorithm, ties broken by declaration order, so a pull order
// never depends on map iteration.
type graph struct {
	order     []string       // tasks (not finally) in topological order
	position  map[string]int // task -> index in order
	ancestors map[string]map[string]bool
}

func buildGraph(spec *v1.PipelineSpec) (*graph, error) {
	tasks := v1.PipelineTaskList(spec.Tasks)
	d, err := dag.Build(tasks, tasks.Deps())
	if err != nil {
		return nil, fmt.Errorf("building the pipeline's DAG: %w", err)
	}

	declared := make(map[string]int, len(spec.Tasks))
	for i, pt := range spec.Tasks {
		declared[pt.Name] = i
	}
	indegree := make(map[string]int, len(spec.Tasks))
	for _, pt := range spec.Tasks {
		indegree[pt.Name] = len(d.Nodes[pt.Name].Prev)
	}
	g := &graph{position: map[string]int{}, ancestors: map[string]map[string]bool{}}
	// ready is kept sorted by declaration index; pipelines are small (tens of
	// tasks), so a linear insert beats a heap in clarity and speed.
	var ready []string
	insert := func(name string) {
		i := 0
		for i < len(ready) && declared[ready[i]] < declared[name] {
			i++
		}
		ready = append(ready[:i], append([]string{name}, ready[i:]...)...)
	}
	for _, pt := range spec.Tasks {
		if indegree[pt.Name] == 0 {
			insert(pt.Name)
		}
	}
	for len(ready) > 0 {
		name := ready[0]
		ready = ready[1:]
		g.position[name] = len(g.order)
		g.order = append(g.order, name)
		anc := map[string]bool{}
		for _, prev := range d.Nodes[name].Prev {
			anc[prev.Key] = true
			for a := range g.ancestors[prev.Key] {
				anc[a] = true
			}
		}
		g.ancestors[name] = anc
		for _, next := range d.Nodes[name].Next {
			indegree[next.Key]--
			if indegree[next.Key] == 0 {
				insert(next.Key)
			}
		}
	}
	if len(g.order) != len(spec.Tasks) {
		// dag.Build already rejects cycles; this guards the invariant.
		return nil, fmt.Errorf("the pipeline's tasks do not form a DAG")
	}
	return g, nil
}

// upstream returns the tasks whose output a task sees on a PVC, in pull
// order: its ancestors for a task, every task for a finally task.
func (g *graph) upstream(name string, finally bool) []string {
	if finally {
		return g.order
	}
	var out []string
	for _, t := range g.order {
		if g.ancestors[name][t] {
			out = append(out, t)
		}
	}
	return out
}
