package events_test

import (
	"time"

	"github.com/patchfleet/patchfleet/events"
)

var t0 = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

// samples holds one valid, fully populated event per catalog entry: the golden files are
// made from them.
var samples = []events.Event{
	events.SecurityAdvisoryPublished{
		AdvisoryID: "DSA-5650-1", Revision: 2, Source: "osv",
		Aliases: []string{"CVE-2024-28182"}, Title: "nghttp2 security update",
		Summary: "Denial of service via CONTINUATION frames", Published: t0, Modified: t0.Add(time.Hour),
		Severity: events.SeverityHigh, SourceSeverity: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
		Affected: []events.Affected{{
			Ecosystem: events.EcosystemDebian, Release: "12", Package: "nghttp2", FixedVersion: "1.52.0-1+deb12u2",
			Ranges:   []events.VersionRange{{Introduced: "0", Fixed: "1.52.0-1+deb12u2"}},
			Binaries: []events.BinaryPackage{{Name: "libnghttp2-14", Version: "1.52.0-1+deb12u2"}},
		}},
		References: []string{"https://www.debian.org/security/2024/dsa-5650"},
	},
	events.AdvisorySubmitted{
		AdvisoryID: "DSA-5650-1", Source: "osv", Origin: "all.zip!DSA-5650-1.json",
		Aliases: []string{"CVE-2024-28182"}, Title: "nghttp2 security update", Published: t0, Modified: t0,
		Severity: events.SeverityHigh, SourceSeverity: "high",
		Affected: []events.Affected{{Ecosystem: events.EcosystemDebian, Release: "12", Package: "nghttp2", FixedVersion: "1.52.0-1+deb12u2"}},
	},
	events.AdvisoryWithdrawn{AdvisoryID: "USN-6000-1", Revision: 3, Withdrawn: t0, Reason: "superseded by USN-6001-1"},
	events.HostRegistered{
		HostID: "web-01", Name: "web-01.example.net", Fleet: "prod-web", Tags: map[string]string{"env": "prod", "role": "web"},
		SSH: events.SSHTarget{Address: "192.0.2.10", Port: 22, User: "deploy", Bastion: "jump@192.0.2.1:22", Sudo: true,
			HostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"},
		New: true, AppPath: "/srv/app",
	},
	events.HostDecommissioned{HostID: "web-01", Reason: "replaced by web-07"},
	events.HostInventoryReported{
		HostID: "web-01", ScanID: "0193f3a2-4c1b-7d2e-9f10-1234567890ab", ScannedAt: t0,
		OS: events.OSRelease{ID: "debian", VersionID: "12", Codename: "bookworm"}, Kernel: "6.1.0-18-amd64",
		BootID: "5b2f0c1e-8a1d-4c39-9b7e-2f3d4e5f6a7b", PackageSet: "sha256:9f2c", PackageCount: 703,
		Changes:        []events.PackageChange{{Name: "libnghttp2-14", Arch: "amd64", From: "1.52.0-1+deb12u1", To: "1.52.0-1+deb12u2", SourceName: "nghttp2", SourceVersion: "1.52.0-1+deb12u2"}},
		Held:           []string{"docker-ce"},
		RebootRequired: true, RebootPackages: []string{"linux-image-6.1.0-21-amd64"},
		Components: []events.Component{{Name: "nginx", Version: "1.22.1"}},
	},
	events.HostDriftDetected{HostID: "web-01", ScanID: "0193f3a2-4c1b-7d2e-9f10-1234567890ab",
		Changes: []events.PackageChange{{Name: "openssl", Arch: "amd64", From: "3.0.11-1~deb12u2", To: "3.0.13-1~deb12u1", SourceName: "openssl", SourceVersion: "3.0.13-1~deb12u1"}}},
	events.HostKeyMismatch{HostID: "web-01", Expected: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", Presented: "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s", DetectedBy: "executor", JobID: "job-1"},
	events.RebootRequired{HostID: "web-01", Packages: []string{"libc6"}, Since: t0, RolloutID: "r-1", JobID: "job-1"},
	events.HostRebooted{HostID: "web-01", JobID: "job-1", RolloutID: "r-1", OldBootID: "a", NewBootID: "b", Downtime: 42 * time.Second, HealthChecked: true},
	events.RolloutRequested{RequestID: "req-1", RequestedBy: "alice", Kind: events.KindSecurity,
		Selector: events.HostSelector{Fleet: "prod-web", Tags: map[string]string{"role": "web"}}, Reboot: events.RebootIfRequired, ConfigureUnattended: true, Reason: "apply security upgrades"},
	events.RolloutPlanned{RolloutID: "r-1", PlanHash: "sha256:3b1f", Kind: events.KindSecurity, Fleet: "prod-web", AdvisoryIDs: []string{"DSA-5650-1"},
		Severity: events.SeverityHigh, Strategy: events.StrategyInPlace, Reboot: events.RebootIfRequired,
		Waves: []events.Wave{{Index: 0, Hosts: []string{"web-01"}}, {Index: 1, Hosts: []string{"web-02", "web-03"}}}, HostCount: 3, MaxFailures: 1,
		NeedsApproval: true, NotBefore: t0},
	events.RolloutApprovalRequested{RolloutID: "r-1", PlanHash: "sha256:3b1f", Fleet: "prod-web", Summary: "3 hosts, 1 advisory (high)", Approvers: []string{"alice", "bob"}},
	events.RolloutApproved{Decision: events.Decision{RolloutID: "r-1", By: "alice", Reason: "looks fine"}, PlanHash: "sha256:3b1f"},
	events.RolloutRejected{Decision: events.Decision{RolloutID: "r-1", By: "bob", Reason: "wait for the release"}, PlanHash: "sha256:3b1f"},
	events.RolloutPaused{Decision: events.Decision{RolloutID: "r-1", By: "alice", Reason: "investigating"}},
	events.RolloutResumed{Decision: events.Decision{RolloutID: "r-1", By: "alice"}},
	events.RolloutCancelled{Decision: events.Decision{RolloutID: "r-1", By: "bob", Reason: "replaced"}},
	events.WaveStarted{RolloutID: "r-1", Wave: 1, Hosts: []string{"web-02", "web-03"}},
	events.WaveCompleted{RolloutID: "r-1", Wave: 1, Succeeded: 1, Failed: 1},
	events.RolloutHalted{RolloutID: "r-1", Reason: "failure budget spent", Failed: 2, Budget: 1},
	events.RolloutCompleted{RolloutID: "r-1", Outcome: "completed", Succeeded: 2, Failed: 1, Results: []events.HostResult{
		{HostID: "web-01", Status: events.ResultSucceeded, Rebooted: true},
		{HostID: "web-02", Status: events.ResultSucceeded, RebootPending: true},
		{HostID: "web-03", Status: events.ResultFailed, Reason: events.FailHealthCheck},
	}},
	events.UpgradeRequested{JobID: "job-1", RolloutID: "r-1", Wave: 0, HostID: "web-01", Kind: events.KindSecurity,
		Strategy: events.StrategyInPlace, Reboot: events.RebootIfRequired,
		Packages:    []events.PackageTarget{{Name: "libnghttp2-14", MinVersion: "1.52.0-1+deb12u2"}},
		HealthCheck: "curl -fsS http://127.0.0.1/healthz", ConfigureUnattended: true, AutoReboot: false,
		Components: []events.Component{{Name: "docker", Version: "27.3.1"}}, Deadline: t0.Add(time.Hour)},
	events.UpgradeStarted{JobID: "job-1", RolloutID: "r-1", HostID: "web-01", Executor: "executor-7f9c", Attempt: 1},
	events.UpgradeCompleted{JobID: "job-1", RolloutID: "r-1", HostID: "web-01",
		Packages:       []events.PackageResult{{Name: "libnghttp2-14", Before: "1.52.0-1+deb12u1", After: "1.52.0-1+deb12u2"}},
		RebootRequired: true, Rebooted: true, Downtime: 40 * time.Second, Duration: 95 * time.Second},
	events.UpgradeFailed{JobID: "job-1", RolloutID: "r-1", HostID: "web-03", Reason: events.FailAptError,
		Message: "apt-get install exited 100", OutputTail: "E: Sub-process /usr/bin/dpkg returned an error code (1)",
		Packages: []events.PackageResult{{Name: "libnghttp2-14", Before: "1.52.0-1+deb12u1", After: "1.52.0-1+deb12u1"}}},
}
