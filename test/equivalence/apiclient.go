package main

// The harness reads the cluster hundreds of times per case (a run's status
// every 2 s, its TaskRuns, pods and every container's log). Each kubectl is
// a new process with its own TLS handshake; on the test bed's 2 cores,
// which every case keeps busy, that is CPU the pods do not get. The reads
// kcJSON and kc do most often go through one in-process client instead
// (same objects as `kubectl get -o json`, same logs); everything else still
// runs kubectl.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// readResources are the kinds the in-process client reads, by the names the
// harness gives kubectl.
var readResources = map[string]schema.GroupVersionResource{
	"pipelinerun":  {Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"},
	"pipelineruns": {Group: "tekton.dev", Version: "v1", Resource: "pipelineruns"},
	"taskrun":      {Group: "tekton.dev", Version: "v1", Resource: "taskruns"},
	"taskruns":     {Group: "tekton.dev", Version: "v1", Resource: "taskruns"},
	"pod":          {Version: "v1", Resource: "pods"},
	"pods":         {Version: "v1", Resource: "pods"},
	"pvc":          {Version: "v1", Resource: "persistentvolumeclaims"},
}

var api struct {
	once    sync.Once
	dyn     dynamic.Interface
	core    kubernetes.Interface
	initErr error
}

func apiClients() (dynamic.Interface, kubernetes.Interface, error) {
	api.once.Do(func() {
		cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
		if err != nil {
			api.initErr = err
			return
		}
		cfg.QPS, cfg.Burst = 50, 100
		if api.dyn, api.initErr = dynamic.NewForConfig(cfg); api.initErr != nil {
			return
		}
		api.core, api.initErr = kubernetes.NewForConfig(cfg)
	})
	return api.dyn, api.core, api.initErr
}

// readArgs is a kubectl read the in-process client does: [-n NS] get
// RESOURCE [NAME] [-l SELECTOR], or [-n NS] logs POD -c CONTAINER.
type readArgs struct {
	ns, verb, resource, name, selector, container string
}

func parseRead(args []string) (readArgs, bool) {
	var r readArgs
	i := 0
	if len(args) >= 2 && args[0] == "-n" {
		r.ns, i = args[1], 2
	}
	if i >= len(args) {
		return r, false
	}
	r.verb = args[i]
	i++
	switch r.verb {
	case "get":
		if i >= len(args) {
			return r, false
		}
		r.resource = args[i]
		i++
		if _, ok := readResources[r.resource]; !ok {
			return r, false
		}
		if i < len(args) && !strings.HasPrefix(args[i], "-") {
			r.name = args[i]
			i++
		}
		if i+1 < len(args) && args[i] == "-l" && r.name == "" {
			r.selector = args[i+1]
			i += 2
		}
	case "logs":
		if i+2 >= len(args) || args[i+1] != "-c" || r.ns == "" {
			return r, false
		}
		r.name, r.container = args[i], args[i+2]
		i += 3
	default:
		return r, false
	}
	return r, i == len(args)
}

// apiRead does a read parseRead accepted: the object or list as JSON
// (`kubectl get -o json`), or the container's log.
func apiRead(r readArgs) ([]byte, error) {
	dyn, core, err := apiClients()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if r.verb == "logs" {
		out, err := core.CoreV1().Pods(r.ns).GetLogs(r.name, &corev1.PodLogOptions{Container: r.container}).DoRaw(ctx)
		if err != nil {
			return nil, fmt.Errorf("logs %s/%s -c %s: %w", r.ns, r.name, r.container, err)
		}
		return out, nil
	}
	res := dyn.Resource(readResources[r.resource]).Namespace(r.ns)
	if r.name != "" {
		o, err := res.Get(ctx, r.name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("get %s %s/%s: %w", r.resource, r.ns, r.name, err)
		}
		return json.Marshal(o.Object)
	}
	l, err := res.List(ctx, metav1.ListOptions{LabelSelector: r.selector})
	if err != nil {
		return nil, fmt.Errorf("get %s in %s -l %q: %w", r.resource, r.ns, r.selector, err)
	}
	items := make([]any, 0, len(l.Items))
	for _, it := range l.Items {
		items = append(items, it.Object)
	}
	return json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
}
