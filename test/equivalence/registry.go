package main

// The harness reads the registry as a client on this machine: a Service's
// cluster IP is routed from the host as from a pod (kube-proxy's rules
// cover locally made connections), and the API server's service proxy
// cannot carry a bearer token (it drops the Authorization header). When the
// registry asks for a token (the chart's default, registry.auth.mode
// token), the harness follows the challenge: the realm names an in-cluster
// Service, which is resolved to its cluster IP, and the registry token is
// paid for with a token of a ServiceAccount for the token service's
// audience, as the injected steps pay for theirs. The run's own namespace
// reads its repositories; another namespace's token must be refused.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

var (
	registryService = envOr("REGISTRY_SERVICE", "tekton-oci-transport-zot")
	registryPort    = envOr("REGISTRY_PORT", "5000")
	tokenAudience   = envOr("REGISTRY_TOKEN_AUDIENCE", "oci-transport.tekton.dev/registry")
	httpClient      = &http.Client{Timeout: 20 * time.Second}
)

// serviceAddress is host:port of a Service's cluster IP for an in-cluster
// address "name.namespace.svc[.cluster.local]:port" or of name in ns.
func serviceAddress(name, ns, port string) (string, error) {
	out, err := kc(nil, "-n", ns, "get", "service", name, "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		return "", err
	}
	ip := strings.TrimSpace(string(out))
	if ip == "" || ip == "None" {
		return "", fmt.Errorf("service %s/%s has no cluster IP", ns, name)
	}
	return ip + ":" + port, nil
}

// hostURL rewrites an in-cluster URL (a Service's DNS name) to its cluster IP.
func hostURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	parts := strings.Split(u.Hostname(), ".")
	if len(parts) < 3 || parts[2] != "svc" {
		return raw, nil // not a Service name: as it is
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	addr, err := serviceAddress(parts[0], parts[1], port)
	if err != nil {
		return "", err
	}
	u.Host = addr
	return u.String(), nil
}

var challengeParam = regexp.MustCompile(`(\w+)="([^"]*)"`)

// registryGet GETs path (under /v2/) from the test bed's registry as the
// default ServiceAccount of namespace ns: status and body.
func registryGet(ns, path string) (int, []byte, error) {
	addr, err := serviceAddress(registryService, registryNS, registryPort)
	if err != nil {
		return 0, nil, err
	}
	target := "http://" + addr + "/v2/" + path
	resp, err := httpClient.Get(target)
	if err != nil {
		return 0, nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	challenge := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(strings.ToLower(challenge), "bearer ") {
		return resp.StatusCode, body, nil
	}
	params := map[string]string{}
	for _, p := range challengeParam.FindAllStringSubmatch(challenge, -1) {
		params[p[1]] = p[2]
	}
	realm, err := hostURL(params["realm"])
	if err != nil {
		return 0, nil, fmt.Errorf("the registry's token realm %q: %w", params["realm"], err)
	}
	sa, err := kc(nil, "-n", ns, "create", "token", "default", "--audience", tokenAudience, "--duration", "10m")
	if err != nil {
		return 0, nil, err
	}
	q := url.Values{"service": {params["service"]}, "scope": {params["scope"]}}
	req, _ := http.NewRequest(http.MethodGet, realm+"?"+q.Encode(), nil)
	req.SetBasicAuth("equivalence", strings.TrimSpace(string(sa)))
	tr, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	tb, _ := io.ReadAll(tr.Body)
	tr.Body.Close()
	if tr.StatusCode != http.StatusOK {
		return tr.StatusCode, tb, nil
	}
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(tb, &tok); err != nil {
		return 0, nil, fmt.Errorf("the token service's answer: %w", err)
	}
	if tok.Token == "" {
		tok.Token = tok.AccessToken
	}
	req, _ = http.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err = httpClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// registryTags lists repo's tags as namespace ns's steps would see them.
func registryTags(ns, repo string) ([]string, error) {
	status, body, err := registryGet(ns, repo+"/tags/list")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("tags of %s as namespace %s: HTTP %d: %.200s", repo, ns, status, body)
	}
	var tags struct{ Tags []string }
	if err := json.Unmarshal(body, &tags); err != nil {
		return nil, err
	}
	return tags.Tags, nil
}

// otherNamespaceRefused checks that another namespace's ServiceAccount
// cannot read repo ("" when it is refused, or when the registry asks for no
// credentials at all: then there is no tenant isolation to check, and it
// says so).
func otherNamespaceRefused(repo string) string {
	addr, err := serviceAddress(registryService, registryNS, registryPort)
	if err != nil {
		return err.Error()
	}
	resp, err := httpClient.Get("http://" + addr + "/v2/" + repo + "/tags/list")
	if err != nil {
		return err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		fmt.Printf("  registry: answers without credentials (registry.auth.mode none): no tenant isolation to check\n")
		return ""
	}
	status, body, err := registryGet("default", repo+"/tags/list")
	if err != nil {
		return err.Error()
	}
	if status == http.StatusOK {
		return fmt.Sprintf("registry: namespace default's ServiceAccount read %s: %.200s", repo, body)
	}
	fmt.Printf("  registry: another namespace's ServiceAccount is refused (HTTP %d)\n", status)
	return ""
}
