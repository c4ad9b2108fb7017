package main

// The PVC run's storage for cases that run as non-root.
//
// The test bed's default StorageClass is the kube-controller-manager's
// hostPath provisioner: its volumes are 0750 root:root directories, and the
// kubelet does not apply a pod's fsGroup to hostPath volumes, so a task that
// runs as non-root cannot write its own claim. Clusters that run tasks as
// non-root (Pod Security "restricted", OpenShift's restricted SCC) give them
// volumes whose driver supports fsGroup (most CSI block drivers): on the first
// mount the kubelet makes the root group fsGroup, group-writable and setgid.
// A case asks for such a volume with `storageClassName: eq-fsgroup` in its
// volumeClaimTemplate; the PVC run then gets local PersistentVolumes (the
// kubelet applies fsGroup to those as it does to a CSI volume) of a class of
// its own, one per claim, each a fresh directory with a new file system's
// root (0755 root:root). The converted run drops the claim (an emptyDir, to
// which the kubelet applies fsGroup too), so only the reference's storage
// changes, not the user's pipeline.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	fsGroupClass = "eq-fsgroup"
	// localRoot is under the hostPath provisioner's directory, which
	// test/cluster/down.sh removes.
	localRoot = "/tmp/hostpath-provisioner/eq-local"
)

// localClaims gives the PVC run's eq-fsgroup claims (run is the PVC run's
// PipelineRun, changed in place) local volumes of a class of the case's own.
func (c *kase) localClaims(run obj) error {
	class := fsGroupClass + "-" + c.ns
	n := 0
	for _, w := range list(m(run, "spec"), "workspaces") {
		spec := m(w.(obj), "volumeClaimTemplate", "spec")
		if spec == nil || s(spec, "storageClassName") != fsGroupClass {
			continue
		}
		spec["storageClassName"] = class
		n++
	}
	if n == 0 {
		return nil
	}
	node, err := kc(nil, "get", "nodes", "-o", "jsonpath={.items[0].metadata.name}")
	if err != nil {
		return err
	}
	sc := fmt.Sprintf(`{"apiVersion":"storage.k8s.io/v1","kind":"StorageClass","metadata":{"name":%q,"labels":{"eq-case":%q}},"provisioner":"kubernetes.io/no-provisioner","volumeBindingMode":"WaitForFirstConsumer","reclaimPolicy":"Retain"}`, class, c.ns)
	if _, err := kc([]byte(sc), "apply", "-f", "-"); err != nil {
		return err
	}
	// a name of its own per attempt: a volume of an earlier attempt may
	// still be on its way out
	nonce := time.Now().Format("150405")
	for i := range n {
		name := fmt.Sprintf("%s-%s-%d", class, nonce, i)
		dir := filepath.Join(localRoot, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("a local volume for the PVC run: %w", err)
		}
		if err := os.Chmod(dir, 0o755); err != nil { // whatever the umask
			return err
		}
		pv := fmt.Sprintf(`{"apiVersion":"v1","kind":"PersistentVolume","metadata":{"name":%q,"labels":{"eq-case":%q}},
"spec":{"capacity":{"storage":"100Gi"},"accessModes":["ReadWriteOnce"],"persistentVolumeReclaimPolicy":"Retain",
"storageClassName":%q,"local":{"path":%q},
"nodeAffinity":{"required":{"nodeSelectorTerms":[{"matchExpressions":[{"key":"kubernetes.io/hostname","operator":"In","values":[%q]}]}]}}}}`,
			name, c.ns, class, dir, strings.TrimSpace(string(node)))
		if _, err := kc([]byte(pv), "create", "-f", "-"); err != nil {
			return err
		}
	}
	fmt.Printf("  PVC run: %d claim(s) of class %s on local volumes (the kubelet applies fsGroup)\n", n, fsGroupClass)
	return nil
}

// dropLocalVolumes deletes the case's local volumes and class (the
// directories go with the test bed: test/cluster/down.sh).
func (c *kase) dropLocalVolumes() {
	_, _ = kc(nil, "delete", "pv", "-l", "eq-case="+c.ns, "--wait=false", "--ignore-not-found")
	_, _ = kc(nil, "delete", "storageclass", "-l", "eq-case="+c.ns, "--wait=false", "--ignore-not-found")
}
