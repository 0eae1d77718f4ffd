// A small Markdown renderer that escapes everything first and then adds a fixed set of tags: the HTML it returns
// holds no character of the source outside escaped text, so model output can never inject markup or script.
// Supported: fenced code (``` with a language label), inline code, headings, paragraphs, line breaks, bold, italic,
// strikethrough, links (http, https, mailto only), bullet and numbered lists, block quotes, rules and simple tables.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const SAFE_URL = /^(https?:\/\/|mailto:)[^\s]*$/i;

// Inline formatting on one line of *raw* text: code spans are cut out first, the rest is escaped, then marked up.
function inline(raw) {
  const parts = raw.split(/(`+[^`]*?`+)/g);
  return parts
    .map((part, index) => {
      if (index % 2 === 1) {
        return `<code>${escapeHtml(part.replace(/^`+|`+$/g, ""))}</code>`;
      }
      let html = escapeHtml(part);
      html = html.replace(/\[([^\]\n]+)\]\(([^)\s]+)\)/g, (match, label, url) => {
        const plain = url.replace(/&amp;/g, "&");
        if (!SAFE_URL.test(plain)) return match;
        return `<a href="${url}" target="_blank" rel="noopener noreferrer">${label}</a>`;
      });
      html = html.replace(/\*\*(?=\S)([^*]*?\S)\*\*/g, "<strong>$1</strong>");
      html = html.replace(/__(?=\S)([^_]*?\S)__/g, "<strong>$1</strong>");
      html = html.replace(/(^|[^*\w])\*(?=\S)([^*]*?\S)\*(?!\*)/g, "$1<em>$2</em>");
      html = html.replace(/(^|[^_\w])_(?=\S)([^_]*?\S)_(?![_\w])/g, "$1<em>$2</em>");
      html = html.replace(/~~(?=\S)([^~]*?\S)~~/g, "<del>$1</del>");
      return html;
    })
    .join("");
}

function isTableRow(line) {
  return /^\s*\|.*\|\s*$/.test(line);
}

function cells(line) {
  return line.trim().replace(/^\||\|$/g, "").split("|").map((cell) => cell.trim());
}

function renderBlocks(lines) {
  const out = [];
  let i = 0;
  const paragraph = [];
  const flush = () => {
    if (paragraph.length) {
      out.push(`<p>${paragraph.map(inline).join("<br>")}</p>`);
      paragraph.length = 0;
    }
  };
  while (i < lines.length) {
    const line = lines[i];
    let match;
    if (!line.trim()) {
      flush();
      i += 1;
    } else if ((match = /^(#{1,6})\s+(.*)$/.exec(line))) {
      flush();
      const level = Math.min(match[1].length + 2, 6); // the page owns h1-h2; replies start at h3
      out.push(`<h${level}>${inline(match[2])}</h${level}>`);
      i += 1;
    } else if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flush();
      out.push("<hr>");
      i += 1;
    } else if (/^\s*>/.test(line)) {
      flush();
      const quoted = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) {
        quoted.push(lines[i].replace(/^\s*>\s?/, ""));
        i += 1;
      }
      out.push(`<blockquote>${renderBlocks(quoted)}</blockquote>`);
    } else if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
      flush();
      const ordered = /^\s*\d+[.)]\s+/.test(line);
      const items = [];
      while (i < lines.length && /^\s*([-*+]|\d+[.)])\s+/.test(lines[i])) {
        items.push(`<li>${inline(lines[i].replace(/^\s*([-*+]|\d+[.)])\s+/, ""))}</li>`);
        i += 1;
      }
      const tag = ordered ? "ol" : "ul";
      out.push(`<${tag}>${items.join("")}</${tag}>`);
    } else if (isTableRow(line) && i + 1 < lines.length && /^\s*\|?[\s:|-]+\|?\s*$/.test(lines[i + 1]) && lines[i + 1].includes("-")) {
      flush();
      const head = cells(line).map((cell) => `<th scope="col">${inline(cell)}</th>`).join("");
      i += 2;
      const rows = [];
      while (i < lines.length && isTableRow(lines[i])) {
        rows.push(`<tr>${cells(lines[i]).map((cell) => `<td>${inline(cell)}</td>`).join("")}</tr>`);
        i += 1;
      }
      out.push(`<div class="table-wrap"><table><thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody></table></div>`);
    } else {
      paragraph.push(line);
      i += 1;
    }
  }
  flush();
  return out.join("");
}

// Render Markdown to a string of safe HTML. An unclosed code fence (a reply still streaming) is shown as code.
export function renderMarkdown(source) {
  const lines = String(source).replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let text = [];
  let i = 0;
  while (i < lines.length) {
    const fence = /^\s*(`{3,}|~{3,})\s*([\w+#.-]*)/.exec(lines[i]);
    if (!fence) {
      text.push(lines[i]);
      i += 1;
      continue;
    }
    out.push(renderBlocks(text));
    text = [];
    const marker = fence[1];
    const language = fence[2];
    const code = [];
    i += 1;
    while (i < lines.length && !lines[i].trim().startsWith(marker)) {
      code.push(lines[i]);
      i += 1;
    }
    i += 1; // the closing fence
    const label = language ? `<span class="code-lang">${escapeHtml(language)}</span>` : "";
    out.push(`<div class="code">${label}<button type="button" class="copy ghost">Copy</button><pre><code>${escapeHtml(code.join("\n"))}</code></pre></div>`);
  }
  out.push(renderBlocks(text));
  return out.join("");
}
