package natsauth

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/patchfleet/patchfleet/events"
)

// The Kubernetes manifests parse, and every Deployment has what running Patchfleet safely
// needs: probes on /healthz and /readyz, resources, a locked-down security context, its
// secrets as files, and volumes for every mount.
func TestKubernetesManifests(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "deployments", "kubernetes", "*.yaml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	deployments := 0
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for i := 0; ; i++ {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s document %d: %v", path, i, err)
			}
			name := filepath.Base(path)
			if strings.HasSuffix(name, "-values.yaml") { // Helm values, not a manifest
				continue
			}
			for _, k := range []string{"apiVersion", "kind", "metadata.name"} {
				if get(doc, k) == nil {
					t.Errorf("%s document %d: no %s", name, i, k)
				}
			}
			if get(doc, "kind") != "Namespace" && get(doc, "metadata.namespace") != "patchfleet" {
				t.Errorf("%s document %d: namespace %v", name, i, get(doc, "metadata.namespace"))
			}
			if get(doc, "kind") == "Deployment" {
				deployments++
				checkDeployment(t, name, doc)
			}
		}
	}
	if deployments != 4 {
		t.Errorf("%d Deployments, want one per service (4)", deployments)
	}
}

func checkDeployment(t *testing.T, name string, d map[string]any) {
	t.Helper()
	fail := func(format string, args ...any) { t.Errorf(name+": "+format, args...) }
	sel, _ := get(d, "spec.selector.matchLabels").(map[string]any)
	labels, _ := get(d, "spec.template.metadata.labels").(map[string]any)
	for k, v := range sel {
		if labels[k] != v {
			fail("selector %s=%v does not match the pod labels", k, v)
		}
	}
	if get(d, "spec.template.spec.securityContext.runAsNonRoot") != true {
		fail("pod does not run as non-root")
	}
	volumes := map[string]bool{}
	for _, v := range items(get(d, "spec.template.spec.volumes")) {
		volumes[get(v, "name").(string)] = true
	}
	containers := items(get(d, "spec.template.spec.containers"))
	if len(containers) == 0 {
		fail("no containers")
	}
	for _, c := range containers {
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
			if get(c, probe+".httpGet.path") != path {
				fail("%s is not GET %s", probe, path)
			}
		}
		for _, k := range []string{"resources.requests.cpu", "resources.requests.memory", "resources.limits.memory", "image"} {
			if get(c, k) == nil {
				fail("container has no %s", k)
			}
		}
		if get(c, "securityContext.allowPrivilegeEscalation") != false || get(c, "securityContext.readOnlyRootFilesystem") != true ||
			!strings.Contains(strings.Join(strs(get(c, "securityContext.capabilities.drop")), ","), "ALL") {
			fail("container security context is not locked down")
		}
		env := map[string]any{}
		for _, e := range items(get(c, "env")) {
			env[get(e, "name").(string)] = get(e, "value")
		}
		for _, k := range []string{"PATCHFLEET_NATS_NKEY", "PATCHFLEET_DATABASE_URL_FILE", "PATCHFLEET_HTTP_ADDR"} {
			if env[k] == nil {
				fail("no %s", k)
			}
		}
		if want := events.UserInbox(get(c, "name").(string)); env["PATCHFLEET_NATS_INBOX"] != want {
			fail("PATCHFLEET_NATS_INBOX = %v, want %s: the only replies its NATS user may read", env["PATCHFLEET_NATS_INBOX"], want)
		}
		if _, ok := env["PATCHFLEET_DATABASE_URL"]; ok {
			fail("the database URL is a secret: give it as a file")
		}
		for _, m := range items(get(c, "volumeMounts")) {
			if !volumes[get(m, "name").(string)] {
				fail("mount of undeclared volume %v", get(m, "name"))
			}
		}
	}
}

// Every service unit connects as the NATS user named after it and reads replies under that
// user's inbox prefix.
func TestSystemdUnitsSetTheUsersInbox(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "deployments", "systemd", "patchfleet-*.service"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no units: %v", err)
	}
	units := 0
	for _, path := range paths {
		user := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "patchfleet-"), ".service")
		if strings.HasPrefix(user, "nats@") {
			continue
		}
		units++
		if _, ok := RoleOf(user); !ok {
			t.Errorf("%s: no NATS user %s", path, user)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want := "Environment=PATCHFLEET_NATS_INBOX=" + events.UserInbox(user) + "\n"
		if !strings.Contains(string(b), want) {
			t.Errorf("%s: no %s", filepath.Base(path), strings.TrimSpace(want))
		}
	}
	if units != 4 {
		t.Errorf("%d service units, want 4", units)
	}
}

// get follows a dotted path through maps.
func get(v any, path string) any {
	for k := range strings.SplitSeq(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func items(v any) []any { l, _ := v.([]any); return l }

func strs(v any) []string {
	var out []string
	for _, x := range items(v) {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
