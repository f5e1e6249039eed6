package register

import (
	"strings"
	"testing"
)

const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

func TestParseFile(t *testing.T) {
	hosts, err := ParseFile(strings.NewReader(`
hosts:
  - id: web-1
    fleet: prod-web
    tags: {env: prod}
    app_path: /srv/app
    ssh: {address: 10.0.0.5, port: 2222, user: pf, bastion: "jump@bastion:22", sudo: true, host_key: "` + key + `"}
  - id: web-2
    name: web-2.example.net
    fleet: prod-web
    new: true
    ssh: {address: 10.0.0.6, tofu: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 || hosts[0].Name != "web-1" || hosts[0].SSH.Port != 2222 || !hosts[0].SSH.Sudo || hosts[0].SSH.HostKey != key ||
		hosts[0].Tags["env"] != "prod" || !hosts[1].New || !hosts[1].SSH.TOFU || hosts[1].Name != "web-2.example.net" {
		t.Fatalf("hosts = %+v", hosts)
	}
}

func TestParseFileErrors(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"empty", "", "empty"},
		{"unknown field", "hosts:\n  - id: a\n    colour: red\n", "colour"},
		{"no key, no tofu", "hosts:\n  - id: a\n    fleet: f\n    ssh: {address: h}\n", "hosts[0] (a)"},
		{"bad key", "hosts:\n  - id: a\n    fleet: f\n    ssh: {address: h, host_key: nope}\n", "host_key"},
		{"no fleet", "hosts:\n  - id: a\n    ssh: {address: h, tofu: true}\n", "fleet"},
		{"duplicate", "hosts:\n  - {id: a, fleet: f, ssh: {address: h, tofu: true}}\n  - {id: a, fleet: f, ssh: {address: h, tofu: true}}\n", "duplicate"},
		{"address with user", "hosts:\n  - {id: a, fleet: f, ssh: {address: root@h, tofu: true}}\n", "address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFile(strings.NewReader(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}
