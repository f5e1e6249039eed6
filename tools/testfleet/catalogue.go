package testfleet

// The packages of the fleet's security repository. Every host starts with the
// 1.0 versions installed; the repository also serves the 1.1 updates.

func pfDemo(version, postinst string) Package {
	return Package{
		Name: "pf-demo", Version: version,
		Description: "Patchfleet demo package",
		Files: []File{{Path: "/usr/bin/pf-demo", Mode: 0o755,
			Data: "#!/bin/sh\necho pf-demo " + version + "\n"}},
		Postinst: postinst,
	}
}

func pfLibdemo(version string) []Package {
	return []Package{
		{
			Name: "libpfdemo1", Source: "pf-libdemo", Version: version,
			Description: "Patchfleet demo library",
			Files: []File{{Path: "/usr/lib/pf-libdemo/libpfdemo.so.1",
				Data: "libpfdemo " + version + "\n"}},
		},
		{
			Name: "pf-libdemo-bin", Source: "pf-libdemo", Version: version,
			Depends:     "libpfdemo1 (= " + version + ")",
			Description: "Patchfleet demo library tools",
			Files: []File{{Path: "/usr/bin/pf-libdemo", Mode: 0o755,
				Data: "#!/bin/sh\ncat /usr/lib/pf-libdemo/libpfdemo.so.1\n"}},
		},
	}
}

func pfBroken(version, postinst string) Package {
	return Package{
		Name: "pf-broken", Version: version,
		Description: "Patchfleet package whose update fails to configure",
		Files:       []File{{Path: "/usr/share/pf-broken/version", Data: version + "\n"}},
		Postinst:    postinst,
	}
}

func pfConf(version string) Package {
	return Package{
		Name: "pf-conf", Version: version,
		Description: "Patchfleet package with a conffile",
		Files: []File{{Path: "/etc/pf-conf.conf",
			Data: "# pf-conf default configuration\nsetting = default-" + version + "\n"}},
		Conffiles: []string{"/etc/pf-conf.conf"},
	}
}

// rebootRequiredPostinst is what Debian packages that need a reboot do:
// flag it in /var/run/reboot-required and name themselves in the .pkgs list.
const rebootRequiredPostinst = `if [ "$1" = configure ]; then
	touch /var/run/reboot-required
	echo pf-demo >>/var/run/reboot-required.pkgs
fi
`

// InstalledPackages are the packages every host has installed at start.
func InstalledPackages() []Package {
	return append([]Package{pfDemo("1.0", ""), pfBroken("1.0", ""), pfConf("1.0")}, pfLibdemo("1.0")...)
}

// UpdatePackages are the updates the repository serves from the start:
//   - pf-demo 1.1, the security fix; its postinst asks for a reboot;
//   - libpfdemo1 and pf-libdemo-bin 1.1, both built from source pf-libdemo;
//   - pf-broken 1.1, whose postinst fails;
//   - pf-conf 1.1, which ships a new default for a conffile the hosts changed.
func UpdatePackages() []Package {
	return append([]Package{
		pfDemo("1.1", rebootRequiredPostinst),
		pfBroken("1.1", "echo 'pf-broken: simulated configuration failure' >&2\nexit 1\n"),
		pfConf("1.1"),
	}, pfLibdemo("1.1")...)
}

// LocalConfig is the content of /etc/pf-conf.conf on every host: the
// administrator's change to pf-conf's default.
const LocalConfig = "# pf-conf configuration, changed by the administrator\nsetting = local\n"
