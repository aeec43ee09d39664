# setup.sh — fixtures for the clone tests (tests/cli/4NN-clone-*.t), sourced
# after lib.sh.  The domain XMLs beside it are templates: @DIR@ becomes the
# folder holding their disks.
#   clone_fixture NAME [DIR]  make the disks of domain NAME (web01, db01,
#                             tiny) in DIR (default $T/vm) and DIR/NAME.xml
#   xml_get FILE PATH         the text (or attribute value, PATH/@attr) at an
#                             ElementTree PATH, one per line
#   disk_get FILE TARGET WHAT the disk with <target dev=TARGET>: WHAT is source
#                             (file or dev), format, type, or backing (the
#                             first <backingStore><source file>)
#   files_in DIR              the sorted names in DIR (hidden ones too), recursive
#   snapshot_sources DIR      sha256 of every file in DIR into $T/sources.sha
#   sources_unchanged DIR     the same files, unchanged (exit status)
DOMAINS=$KIMG_SRC/tests/images/domains

_qio() { qemu-io -f "$1" -c "$3" "$2" > /dev/null || { echo "Bail out! qemu-io $*"; exit 1; }; }

clone_fixture() {
    local name=$1 dir=${2:-$T/vm}
    mkdir -p "$dir/nvram"
    case $name in
    web01)
        qemu-img create -q -f qcow2 "$dir/web01.qcow2" 64M
        _qio qcow2 "$dir/web01.qcow2" "write -P 0xa1 0 1M"
        _qio qcow2 "$dir/web01.qcow2" "write -P 0xa2 10M 64k"
        _qio qcow2 "$dir/web01.qcow2" "write -z 20M 1M"
        qemu-img create -q -f raw "$dir/data.img" 32M
        _qio raw "$dir/data.img" "write -P 0xb1 1M 256k"
        _qio raw "$dir/data.img" "write -P 0xb2 30M 4k"
        qemu-img create -q -f qcow2 "$dir/base.qcow2" 32M
        _qio qcow2 "$dir/base.qcow2" "write -P 0xc1 0 2M"
        (cd "$dir" && qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 logs.qcow2)
        _qio qcow2 "$dir/logs.qcow2" "write -P 0xc2 1M 64k"
        _qio qcow2 "$dir/logs.qcow2" "write -P 0xc3 16M 64k"
        qemu-img create -q -f raw "$dir/install.iso" 1M
        _qio raw "$dir/install.iso" "write -P 0x49 0 32k"
        qemu-img create -q -f raw "$dir/shared.img" 8M
        head -c 131072 /dev/zero | tr '\0' '\125' > "$dir/nvram/web01_VARS.fd"
        ;;
    db01)
        qemu-img create -q -f qcow2 "$dir/db01.qcow2" 16M
        _qio qcow2 "$dir/db01.qcow2" "write -P 0xd1 4M 128k"
        head -c 131072 /dev/zero | tr '\0' '\252' > "$dir/nvram/db01_VARS.fd"
        ;;
    tiny)
        qemu-img create -q -f raw "$dir/tiny.img" 4M
        _qio raw "$dir/tiny.img" "write -P 0xe1 0 64k"
        ;;
    *) echo "Bail out! clone_fixture: unknown domain $name"; exit 1 ;;
    esac
    sed "s|@DIR@|$dir|g" "$DOMAINS/$name.xml" > "$dir/$name.xml"
}

xml_get() {
    $PY - "$1" "$2" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
path = sys.argv[2]
attr = None
if "/@" in path:
    path, attr = path.rsplit("/@", 1)
for e in ([root] if path in (".", "") else root.findall(path)):
    v = e.get(attr) if attr else (e.text or "")
    if v is not None:
        print(v)
PYEOF
}

disk_get() {
    $PY - "$@" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
for d in root.iter("disk"):
    t = d.find("target")
    if t is None or t.get("dev") != sys.argv[2]:
        continue
    s, drv, what = d.find("source"), d.find("driver"), sys.argv[3]
    if what == "source":
        print("" if s is None else (s.get("file") or s.get("dev") or ""))
    elif what == "format":
        print("" if drv is None else drv.get("type", ""))
    elif what == "type":
        print(d.get("type", ""))
    elif what == "backing":
        b = d.find("backingStore/source")
        print("" if b is None else b.get("file", ""))
PYEOF
}

files_in() { (cd "$1" && find . -mindepth 1 | sed 's|^\./||' | sort); }

snapshot_sources() { (cd "$1" && find . -type f | sort | xargs -d '\n' sha256sum) > "$T/sources.sha"; }
sources_unchanged() { (cd "$1" && sha256sum --quiet -c "$T/sources.sha"); }

# validate FILE: virt-xml-validate FILE domain (a skip when it is missing)
validate() {
    if ! command -v virt-xml-validate > /dev/null; then
        skip "$2" "virt-xml-validate not installed (Debian package libvirt-clients)"
        return 0
    fi
    local out
    if out=$(virt-xml-validate "$1" domain 2>&1); then pass "$2"; else fail "$2" "$out"; fi
}
