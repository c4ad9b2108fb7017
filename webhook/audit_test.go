package webhook_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/transform"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/webhooktest"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// TestAuditMatchesConvert runs every golden case of convert mode again in
// audit mode, through the same handler: the audited run is the submitted
// object byte for byte but for the audit annotations, it is never denied,
// and the annotations say what convert mode did to the same run.
func TestAuditMatchesConvert(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*/input.yaml")
	require.NoError(t, err)
	n := 0
	for _, input := range inputs {
		dir := filepath.Dir(input)
		cfg, err := webhooktest.ReadConfig(filepath.Join(dir, "config.yaml"))
		require.NoError(t, err)
		if cfg.Mode != "" || strings.HasPrefix(filepath.Base(dir), "audit-") {
			continue // the audit cases themselves
		}
		n++
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			conv, raw, _, _ := runCase(t, dir, webhook.ModeConvert)
			aud, _, h, req := runCase(t, dir, webhook.ModeAudit)
			require.True(t, aud.Allowed, "audit mode never denies: %s", aud.Message)

			var submitted map[string]any
			require.NoError(t, json.Unmarshal(raw, &submitted))
			annotations := map[string]string{}
			if aud.Patched {
				annotations = auditAnnotationsOf(aud.Object)
				require.Equal(t, submitted, withoutAuditAnnotations(t, aud.Object), "only the audit annotations are added")
				assertReinvocationIsNoop(t, h, req, aud.Object)
			}

			convAnn := map[string]string{}
			if conv.Patched {
				convAnn = annotationsOf(conv.Object)
			}
			t.Logf("convert: allowed %t, patched %t; audit: %v", conv.Allowed, conv.Patched, annotations[webhook.AnnotationAudit])
			switch {
			case convAnn[transform.AnnotationConverted] != "":
				require.Equal(t, webhook.AuditWouldConvert, annotations[webhook.AnnotationAudit])
				require.Equal(t, convAnn[transform.AnnotationConverted], annotations[webhook.AnnotationAuditWorkspaces])
				require.JSONEq(t, convAnn[transform.AnnotationTasks], annotations[webhook.AnnotationAuditTasks])
			case convAnn[transform.AnnotationSkippedReason] != "":
				require.Equal(t, webhook.AuditWouldLeaveUnchanged, annotations[webhook.AnnotationAudit])
				require.Equal(t, convAnn[transform.AnnotationSkippedReason], annotations[webhook.AnnotationAuditReason])
			case !conv.Allowed && annotations[webhook.AnnotationAudit] != "":
				// strict mode denied the run with the reason audit records
				require.Equal(t, webhook.AuditWouldLeaveUnchanged, annotations[webhook.AnnotationAudit])
				require.True(t, strings.HasSuffix(conv.Message, annotations[webhook.AnnotationAuditReason]), "denied with %q, audited %q", conv.Message, annotations[webhook.AnnotationAuditReason])
			default:
				require.Empty(t, annotations)
				require.False(t, aud.Patched, "convert mode left the run as it is, and so does audit")
			}
		})
	}
	require.GreaterOrEqual(t, n, 15, "every convert case is audited")
}

func annotationsOf(obj map[string]any) map[string]string {
	out := map[string]string{}
	meta, _ := obj["metadata"].(map[string]any)
	ann, _ := meta["annotations"].(map[string]any)
	for k, v := range ann {
		out[k], _ = v.(string)
	}
	return out
}

func auditAnnotationsOf(obj map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range annotationsOf(obj) {
		if strings.HasPrefix(k, transform.Domain+"/audit") {
			out[k] = v
		}
	}
	return out
}

// withoutAuditAnnotations is obj without the audit annotations (and without
// annotations when those were all it had).
func withoutAuditAnnotations(t *testing.T, obj map[string]any) map[string]any {
	t.Helper()
	data, err := json.Marshal(obj)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(data, &out))
	meta, _ := out["metadata"].(map[string]any)
	ann, _ := meta["annotations"].(map[string]any)
	for k := range ann {
		if strings.HasPrefix(k, transform.Domain+"/audit") {
			delete(ann, k)
		}
	}
	if ann != nil && len(ann) == 0 {
		delete(meta, "annotations")
	}
	return out
}

// Each audited verdict is counted once, by mode, verdict and reason; a
// reinvocation answered from the record is not counted again.
func TestAuditCountsVerdicts(t *testing.T) {
	count := func(mode, verdict, reason string) float64 {
		families, err := metrics.Registry.Gather()
		require.NoError(t, err)
		for _, f := range families {
			if f.GetName() != "oci_transport_verdicts_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["mode"] == mode && labels["verdict"] == verdict && labels["reason"] == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	convert0 := count("audit", "convert", "none")
	missing0 := count("audit", "leave-unchanged", "ReferenceNotFound")
	converted0 := count("convert", "convert", "none")
	runCase(t, "testdata/audit-would-convert", "")
	runCase(t, "testdata/audit-would-leave-unchanged", "")
	runCase(t, "testdata/audit-recorded", "") // answered from its record
	runCase(t, "testdata/converted-by-name", "")
	require.Equal(t, convert0+1, count("audit", "convert", "none"))
	require.Equal(t, missing0+1, count("audit", "leave-unchanged", "ReferenceNotFound"))
	require.Equal(t, converted0+1, count("convert", "convert", "none"))
}
