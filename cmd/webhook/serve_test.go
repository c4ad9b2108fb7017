package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tekton-oci-transport/tekton-oci-transport/webhook/registration"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

func TestServePrintsTheRegistrationValues(t *testing.T) {
	var out, errOut bytes.Buffer
	code := serve([]string{"--print-webhook-configuration", "--namespace=tot", "--service-name=hook",
		"--resolution-timeout=5s", "--label-key=example.com/on", "--failure-policy=Fail"}, &out, &errOut)
	require.Equal(t, 0, code, errOut.String())
	var got admissionregistrationv1.MutatingWebhookConfiguration
	require.NoError(t, yaml.Unmarshal(out.Bytes(), &got))
	want := registration.MutatingWebhookConfiguration(registration.Values{
		ServiceName: "hook", ServiceNamespace: "tot", ServicePort: 443, LabelKey: "example.com/on",
		ResolutionTimeout: 5 * time.Second, FailurePolicy: admissionregistrationv1.Fail,
	})
	require.Equal(t, *want, got)
	require.Equal(t, int32(7), *got.Webhooks[0].TimeoutSeconds)
}

func TestServeRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--tls-mode=magic"},
		{"--tls-mode=self-managed", "--namespace="},
		{"--resolution-timeout=45s"},
		{"--failure-policy=Sometimes"},
		{"--registry="},
		{"--registry=http://zot:5000"}, // a scheme: every admission would fail open
		{"--registry=zot:5000/path"},
		{"--step-image="},
		{"--step-command="},
		{"typo"}, // positional arguments are no flags
	} {
		var out, errOut bytes.Buffer
		require.Equal(t, 2, serve(args, &out, &errOut), strings.Join(args, " "))
		require.NotEmpty(t, errOut.String())
	}
}

// A subcommand typo must not start a server; version prints the version.
func TestUnknownSubcommandIsAUsageError(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 2, run([]string{"nosuchcommand"}, strings.NewReader(""), &out, &errOut))
	require.Contains(t, errOut.String(), `unknown command "nosuchcommand"`)
	out.Reset()
	require.Equal(t, 0, run([]string{"version"}, strings.NewReader(""), &out, &errOut))
	require.Equal(t, version+"\n", out.String())
}
