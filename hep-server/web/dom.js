// Building HTML without markup strings: every text from the server or the URL goes in
// through textContent (or an attribute set with setAttribute), never as markup, so a
// SIP message carrying `<script>` is shown as text.

/**
 * `h("a", {href: "/x", class: "k"}, "text", child)`: an element with attributes and
 * children (strings become text nodes; null and false are skipped). Attributes whose
 * value is null, undefined or false are left out; `on*` keys that are functions become
 * event listeners.
 */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c == null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `node`. */
export function fill(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** Saves `data` (a Blob) as a file named `name`. */
export function download(data, name) {
  const url = URL.createObjectURL(data);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
