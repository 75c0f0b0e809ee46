# systemd/install.mk: `install` and `uninstall` for Sanaq Sync on a systemd host.
#
# Included at the END of the top-level Makefile (`include systemd/install.mk`),
# or run alone from anywhere:  make -f systemd/install.mk install DESTDIR=/tmp/stage
#
# What goes where (all under $(DESTDIR)):
#   $(SANAQ_HOME)                     virtualenv with sanaq-sync and its dependencies
#   $(BINDIR)/sanaq-{gateway,usb-ingest,keys,selfenum}   wrappers that run the virtualenv
#   $(UNITDIR)/sanaq-*.service        the systemd units
#   $(SYSUSERSDIR)/sanaq.conf         users sanaq-gateway, sanaq-ingest
#   $(TMPFILESDIR)/sanaq.conf         /etc/sanaq/{keys,station}, state and spool directories
#   $(UDEVRULESDIR)/70-sanaq-tablet.rules
#   $(DOCDIR)/operations.md, $(DOCDIR)/examples/*.toml
#   /etc/sanaq/{gateway,usb-ingest}.toml   only when absent: local edits are never overwritten
#
# With an empty DESTDIR (installing on this machine) `install` then creates the
# users and directories and reloads systemd and udev (SANAQ_POSTINSTALL=no skips
# that). `uninstall` stops and disables the services, removes what `install`
# put in place, and keeps keys, edited configuration, users and the state and
# spool directories (census data).
#
# `verify-units DESTDIR=...` runs `systemd-analyze verify --root` on a staged
# install, with this machine's own units (sysinit.target, ...) copied into a
# scratch root first; any output fails it.
#
# Variables:
#   DESTDIR            staging root for packaging; empty: this machine
#   PREFIX             /usr: programs go to $(PREFIX)/bin. Units, sysusers, tmpfiles and udev
#                      rules go under $(PREFIX)/lib for /usr and /usr/local (systemd and udev
#                      read both), else under /usr/local/lib: systemd and udev never look in
#                      /opt. UNITDIR, SYSUSERSDIR, TMPFILESDIR and UDEVRULESDIR may be given
#                      one by one; a directory systemd or udev does not read is refused
#                      (SANAQ_ANY_DIRS=yes allows it, for a distribution's own layout)
#   SANAQ_HOME         /opt/sanaq-sync, the virtualenv (its final path, DESTDIR excluded)
#   SANAQ_PYTHON       interpreter the virtualenv is built on; must not live under
#                      /home, /root or /run/user (ProtectHome= hides those from the services)
#   SANAQ_VENV         yes: build $(SANAQ_HOME) and pip-install this tree into it;
#                      no: only write the wrappers, $(SANAQ_HOME) is an existing
#                      environment where sanaq-sync is installed (and is never removed)
#   PIP_FLAGS          extra pip flags, e.g. --no-index --find-links=/srv/wheels

SANAQ_SRC := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
SANAQ_SYSTEMD := $(SANAQ_SRC)/systemd

DESTDIR ?=
PREFIX ?= /usr
BINDIR ?= $(PREFIX)/bin
SANAQ_SYSLIB := $(if $(filter /usr /usr/local,$(patsubst %/,%,$(PREFIX))),$(patsubst %/,%,$(PREFIX)),/usr/local)/lib
UNITDIR ?= $(SANAQ_SYSLIB)/systemd/system
SYSUSERSDIR ?= $(SANAQ_SYSLIB)/sysusers.d
TMPFILESDIR ?= $(SANAQ_SYSLIB)/tmpfiles.d
UDEVRULESDIR ?= $(SANAQ_SYSLIB)/udev/rules.d
SANAQ_ANY_DIRS ?= no
# Where systemd(1), systemd-sysusers(8), systemd-tmpfiles(8) and udev(7) read their files.
SANAQ_READ_UNITDIRS := /etc/systemd/system /usr/local/lib/systemd/system /usr/lib/systemd/system /lib/systemd/system
SANAQ_READ_SYSUSERSDIRS := /etc/sysusers.d /usr/local/lib/sysusers.d /usr/lib/sysusers.d
SANAQ_READ_TMPFILESDIRS := /etc/tmpfiles.d /usr/local/lib/tmpfiles.d /usr/lib/tmpfiles.d
SANAQ_READ_UDEVDIRS := /etc/udev/rules.d /usr/local/lib/udev/rules.d /usr/lib/udev/rules.d /lib/udev/rules.d
DOCDIR ?= $(PREFIX)/share/doc/sanaq-sync
SANAQ_CONFDIR := /etc/sanaq
SANAQ_HOME ?= /opt/sanaq-sync
SANAQ_PYTHON ?= /usr/bin/python3
SANAQ_VENV ?= yes
SANAQ_POSTINSTALL ?= yes
PIP_FLAGS ?=
INSTALL ?= install

# program=module:function, as in [project.scripts] of pyproject.toml
SANAQ_PROGRAMS := sanaq-gateway=gateway.__main__:main sanaq-usb-ingest=usb_ingest.__main__:main \
                  sanaq-keys=keys.cli:main sanaq-selfenum=selfenum.__main__:main
SANAQ_UNITS := sanaq-gateway.service sanaq-usb-ingest.service sanaq-selfenum.service
SANAQ_EXAMPLES := gateway.toml usb-ingest.toml selfenum.toml
SANAQ_MARKER := .sanaq-sync-venv

.PHONY: install uninstall verify-units sanaq-check-dirs sanaq-install-venv sanaq-install-files sanaq-postinstall

install: sanaq-check-dirs sanaq-install-venv sanaq-install-files sanaq-postinstall

sanaq-check-dirs:
ifneq ($(SANAQ_ANY_DIRS),yes)
	@bad=; \
	for pair in 'UNITDIR=$(UNITDIR)=$(SANAQ_READ_UNITDIRS)' 'SYSUSERSDIR=$(SYSUSERSDIR)=$(SANAQ_READ_SYSUSERSDIRS)' \
	            'TMPFILESDIR=$(TMPFILESDIR)=$(SANAQ_READ_TMPFILESDIRS)' 'UDEVRULESDIR=$(UDEVRULESDIR)=$(SANAQ_READ_UDEVDIRS)'; do \
	  name=$${pair%%=*}; rest=$${pair#*=}; dir=$${rest%%=*}; read=$${rest#*=}; \
	  case " $$read " in *" $${dir%/} "*) ;; *) bad="$$bad $$name=$$dir";; esac; \
	done; \
	if [ -n "$$bad" ]; then \
	  echo "install.mk: refusing:$$bad: systemd and udev never read there, so the services would not exist." >&2; \
	  echo "  Leave these unset (PREFIX only moves the programs), or pass SANAQ_ANY_DIRS=yes if your system reads them." >&2; \
	  exit 2; \
	fi
endif
	@case '$(patsubst %/,%,$(PREFIX))' in /usr|/usr/local) ;; *) \
	  echo "install.mk: PREFIX=$(PREFIX): programs go to $(BINDIR); units and rules to $(SANAQ_SYSLIB) (systemd and udev read nothing under $(PREFIX))";; \
	esac

verify-units:
	@test -n '$(DESTDIR)' || { echo "install.mk: verify-units checks a staged install: give DESTDIR=DIR (as for install)" >&2; exit 2; }
	@set -e; scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	for d in '$(UNITDIR)' '$(BINDIR)'; do mkdir -p "$$scratch$$d"; cp -a '$(DESTDIR)'"$$d"/. "$$scratch$$d"/; done; \
	host=; for d in /usr/lib/systemd/system /lib/systemd/system; do \
	  if [ -e "$$d/sysinit.target" ]; then host=$$d; break; fi; done; \
	if [ -z "$$host" ]; then echo "install.mk: verify-units needs systemd's own units on this machine (apt-get install systemd)" >&2; exit 2; fi; \
	mkdir -p "$$scratch/usr/lib/systemd/system"; \
	for f in "$$host"/*; do n=$${f##*/}; case $$n in sanaq-*) continue;; esac; \
	  [ -e "$$scratch/usr/lib/systemd/system/$$n" ] || cp -a "$$f" "$$scratch/usr/lib/systemd/system/"; done; \
	out=$$(for u in $(SANAQ_UNITS); do systemd-analyze verify --man=no --root="$$scratch" "$$u" 2>&1 || echo "$$u: exit status $$?"; done); \
	if [ -n "$$out" ]; then printf '%s\n' "$$out" >&2; echo "install.mk: systemd-analyze verify reported the lines above" >&2; exit 1; fi; \
	echo "verified: $(SANAQ_UNITS) (systemd-analyze verify --root, with this machine's units copied in)"

sanaq-install-venv:
ifeq ($(SANAQ_VENV),yes)
	@case "$$(readlink -f '$(SANAQ_PYTHON)')" in \
	  /home/*|/root/*|/run/user/*|'') echo "install.mk: SANAQ_PYTHON=$(SANAQ_PYTHON) is missing or under a home" \
	    "directory, which ProtectHome= hides from the services; use a system python3" >&2; exit 1;; \
	esac
	'$(SANAQ_PYTHON)' -m venv '$(DESTDIR)$(SANAQ_HOME)'
	'$(DESTDIR)$(SANAQ_HOME)/bin/python' -m pip install --quiet --no-compile --upgrade $(PIP_FLAGS) '$(SANAQ_SRC)'
	@# Staged: scripts and pyvenv.cfg name the staging path; give them the final one.
	@if [ -n '$(DESTDIR)' ]; then \
	  grep -rlIF '$(DESTDIR)$(SANAQ_HOME)' '$(DESTDIR)$(SANAQ_HOME)/bin' '$(DESTDIR)$(SANAQ_HOME)/pyvenv.cfg' | \
	    xargs -r sed -i -e 's|$(DESTDIR)$(SANAQ_HOME)|$(SANAQ_HOME)|g'; \
	fi
	@# The services cannot write to $(SANAQ_HOME): compile now, with final paths in the .pyc files.
	'$(DESTDIR)$(SANAQ_HOME)/bin/python' -m compileall -q -j 0 -s '$(DESTDIR)' -p / '$(DESTDIR)$(SANAQ_HOME)/lib' >/dev/null
	touch '$(DESTDIR)$(SANAQ_HOME)/$(SANAQ_MARKER)'
endif

sanaq-install-files:
	$(INSTALL) -d -m 0755 '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(UNITDIR)' '$(DESTDIR)$(SYSUSERSDIR)' \
	  '$(DESTDIR)$(TMPFILESDIR)' '$(DESTDIR)$(UDEVRULESDIR)' '$(DESTDIR)$(DOCDIR)/examples' \
	  '$(DESTDIR)$(SANAQ_CONFDIR)'
	$(INSTALL) -d -m 0700 '$(DESTDIR)$(SANAQ_CONFDIR)/keys' '$(DESTDIR)$(SANAQ_CONFDIR)/station' \
	  '$(DESTDIR)$(SANAQ_CONFDIR)/selfenum'
	@set -e; for spec in $(SANAQ_PROGRAMS); do \
	  prog=$${spec%%=*}; entry=$${spec#*=}; module=$${entry%%:*}; func=$${entry#*:}; \
	  tmp='$(DESTDIR)$(BINDIR)'/.$$prog.tmp; \
	  sed -e "s|@PROG@|$$prog|g" -e "s|@MODULE@|$$module|g" -e "s|@FUNC@|$$func|g" \
	      -e 's|@SANAQ_HOME@|$(SANAQ_HOME)|g' '$(SANAQ_SYSTEMD)/wrapper.sh.in' > "$$tmp"; \
	  chmod 0755 "$$tmp"; mv -f "$$tmp" '$(DESTDIR)$(BINDIR)'/$$prog; \
	  echo "installed $(DESTDIR)$(BINDIR)/$$prog"; \
	done
	@set -e; for unit in $(SANAQ_UNITS); do \
	  tmp='$(DESTDIR)$(UNITDIR)'/.$$unit.tmp; \
	  sed -e 's|/usr/bin/sanaq-|$(BINDIR)/sanaq-|g' -e 's|file:/usr/share/doc/sanaq-sync/|file:$(DOCDIR)/|g' \
	      '$(SANAQ_SYSTEMD)'/$$unit > "$$tmp"; \
	  chmod 0644 "$$tmp"; mv -f "$$tmp" '$(DESTDIR)$(UNITDIR)'/$$unit; \
	  echo "installed $(DESTDIR)$(UNITDIR)/$$unit"; \
	done
	$(INSTALL) -m 0644 '$(SANAQ_SYSTEMD)/sysusers.d/sanaq.conf' '$(DESTDIR)$(SYSUSERSDIR)/sanaq.conf'
	$(INSTALL) -m 0644 '$(SANAQ_SYSTEMD)/tmpfiles.d/sanaq.conf' '$(DESTDIR)$(TMPFILESDIR)/sanaq.conf'
	$(INSTALL) -m 0644 '$(SANAQ_SYSTEMD)/udev/70-sanaq-tablet.rules' '$(DESTDIR)$(UDEVRULESDIR)/70-sanaq-tablet.rules'
	$(INSTALL) -m 0644 '$(SANAQ_SRC)/docs/operations.md' '$(DESTDIR)$(DOCDIR)/operations.md'
	$(INSTALL) -m 0644 '$(SANAQ_SRC)/docs/selfenum.md' '$(DESTDIR)$(DOCDIR)/selfenum.md'
	@set -e; for ex in $(SANAQ_EXAMPLES); do \
	  $(INSTALL) -m 0644 '$(SANAQ_SYSTEMD)'/examples/$$ex '$(DESTDIR)$(DOCDIR)'/examples/$$ex; \
	  if [ -e '$(DESTDIR)$(SANAQ_CONFDIR)'/$$ex ]; then \
	    echo "kept $(DESTDIR)$(SANAQ_CONFDIR)/$$ex (the new example is in $(DOCDIR)/examples)"; \
	  else \
	    $(INSTALL) -m 0644 '$(SANAQ_SYSTEMD)'/examples/$$ex '$(DESTDIR)$(SANAQ_CONFDIR)'/$$ex; \
	    echo "installed $(DESTDIR)$(SANAQ_CONFDIR)/$$ex"; \
	  fi; \
	done

sanaq-postinstall: sanaq-install-files
	@if [ -z '$(DESTDIR)' ] && [ '$(SANAQ_POSTINSTALL)' = yes ]; then \
	  set -e; \
	  systemd-sysusers '$(SYSUSERSDIR)/sanaq.conf'; \
	  systemd-tmpfiles --create '$(TMPFILESDIR)/sanaq.conf'; \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	  if command -v udevadm >/dev/null 2>&1 && [ -d /run/udev ]; then \
	    udevadm control --reload-rules; \
	    udevadm trigger --action=change --subsystem-match=block --property-match=ID_FS_LABEL=SANAQEXPORT; \
	  fi; \
	  echo "next: put the keys in place and enable the services (see $(DOCDIR)/operations.md)"; \
	fi

uninstall:
	@if [ -z '$(DESTDIR)' ] && [ -d /run/systemd/system ]; then \
	  systemctl disable --now $(SANAQ_UNITS) || true; \
	fi
	@for spec in $(SANAQ_PROGRAMS); do \
	  f='$(DESTDIR)$(BINDIR)'/$${spec%%=*}; \
	  if [ -f "$$f" ] && grep -q 'installed by systemd/install.mk' "$$f"; then rm -f "$$f"; echo "removed $$f"; fi; \
	done
	@for unit in $(SANAQ_UNITS); do rm -f '$(DESTDIR)$(UNITDIR)'/$$unit; done
	rm -f '$(DESTDIR)$(SYSUSERSDIR)/sanaq.conf' '$(DESTDIR)$(TMPFILESDIR)/sanaq.conf' \
	  '$(DESTDIR)$(UDEVRULESDIR)/70-sanaq-tablet.rules' '$(DESTDIR)$(DOCDIR)/operations.md' \
	  '$(DESTDIR)$(DOCDIR)/selfenum.md'
	@for ex in $(SANAQ_EXAMPLES); do \
	  rm -f '$(DESTDIR)$(DOCDIR)'/examples/$$ex; \
	  conf='$(DESTDIR)$(SANAQ_CONFDIR)'/$$ex; \
	  if [ -f "$$conf" ]; then \
	    if cmp -s "$$conf" '$(SANAQ_SYSTEMD)'/examples/$$ex; then rm -f "$$conf"; echo "removed $$conf"; \
	    else echo "kept $$conf (edited)"; fi; \
	  fi; \
	done
	-rmdir '$(DESTDIR)$(DOCDIR)/examples' '$(DESTDIR)$(DOCDIR)' 2>/dev/null
	-rmdir '$(DESTDIR)$(SANAQ_CONFDIR)/keys' '$(DESTDIR)$(SANAQ_CONFDIR)/station' \
	  '$(DESTDIR)$(SANAQ_CONFDIR)/selfenum' '$(DESTDIR)$(SANAQ_CONFDIR)' 2>/dev/null
ifeq ($(SANAQ_VENV),yes)
	@if [ -f '$(DESTDIR)$(SANAQ_HOME)/$(SANAQ_MARKER)' ]; then \
	  rm -rf '$(DESTDIR)$(SANAQ_HOME)'; echo "removed $(DESTDIR)$(SANAQ_HOME)"; \
	fi
endif
	@if [ -z '$(DESTDIR)' ]; then \
	  if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	  if command -v udevadm >/dev/null 2>&1 && [ -d /run/udev ]; then udevadm control --reload-rules; fi; \
	  echo "kept: users sanaq-gateway/sanaq-ingest, /etc/sanaq/keys, /etc/sanaq/station," \
	    "/var/lib/sanaq-gateway, /var/lib/sanaq-usb-ingest (census data; remove by hand)"; \
	fi
