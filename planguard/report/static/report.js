// planguard report: builds the statements table, the charts and each statement's detail
// (plan trees included) from the page's JSON blocks. Data only ever reaches the DOM as
// text (textContent, createTextNode) or as attribute values set one by one; never as markup.
(function () {
  'use strict';

  const SVGNS = 'http://www.w3.org/2000/svg';
  const byId = (id) => document.getElementById(id);

  function add(parent, kid) {
    if (kid === null || kid === undefined || kid === false) return;
    if (Array.isArray(kid)) { kid.forEach((k) => add(parent, k)); return; }
    parent.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }

  // el('div', {class: 'x', title: t, onclick: f}, kids...): attributes are set one at a time.
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    add(e, kids);
    return e;
  }

  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    add(e, kids);
    return e;
  }

  function setAttrs(e, attrs) {
    if (!attrs) return;
    for (const k of Object.keys(attrs)) {
      const v = attrs[k];
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') e.setAttribute('class', v);
      else if (k === 'text') e.textContent = String(v);
      else if (k.slice(0, 2) === 'on') e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }

  // ---- formatting ------------------------------------------------------------------
  const nf0 = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const nf1 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const nf3 = new Intl.NumberFormat('en-US', { minimumFractionDigits: 3, maximumFractionDigits: 3 });
  const dash = '–';
  const isNum = (v) => typeof v === 'number' && isFinite(v);
  const ms = (v) => (!isNum(v) ? dash : v < 10 ? nf3.format(v) : nf1.format(v));
  const num = (v) => (!isNum(v) ? dash : nf0.format(v));
  const ratio = (v) => (!isNum(v) ? dash : v >= 100 ? nf0.format(v) : v.toFixed(2));
  const sessions = (v) => (!isNum(v) ? dash : Math.abs(v) < 0.0005 ? '0.000' : (v > 0 ? '+' : '') + v.toFixed(3));
  const pct = (v) => (v * 100 >= 10 ? (v * 100).toFixed(0) : (v * 100).toFixed(1)) + ' %';
  const rows = (v) => (!isNum(v) ? dash : v >= 1e6 ? (v / 1e6).toFixed(1) + 'M' : v >= 1e4 ? (v / 1e3).toFixed(0) + 'k' : nf0.format(v));

  function badge(status, text) { return el('span', { class: 'badge ' + status, text: text || status }); }

  // A regression's attribution (statistics, planner, unknown), its note as the tooltip.
  const ATTR = { statistics: 'NEW chooses OLD\'s plan with OLD\'s statistics: a statistics problem',
    planner: 'NEW keeps its plan with OLD\'s statistics: a planner change between the versions',
    unknown: 'could not be decided' };
  function attrBadge(attr, note, small) {
    return el('span', { class: 'badge attr a-' + attr + (small ? ' small' : ''), title: note || ATTR[attr] || attr, text: attr });
  }

  // ---- copy to the clipboard ---------------------------------------------------------
  async function copyText(text, button) {
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) { await navigator.clipboard.writeText(text); ok = true; }
    } catch (e) { ok = false; }
    if (!ok) {
      const ta = el('textarea', { class: 'copybuf', readonly: true, 'aria-label': 'text to copy' });
      ta.value = text;
      document.body.appendChild(ta);
      ta.focus();
      ta.select();
      try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      if (ok) ta.remove();
      else ta.addEventListener('blur', () => ta.remove());  // left selected: Ctrl+C copies it
    }
    if (button) {
      const label = button.dataset.label || button.textContent;
      button.dataset.label = label;
      button.textContent = ok ? 'Copied' : 'Press Ctrl+C';
      setTimeout(() => { button.textContent = label; }, 1500);
    }
  }

  function copyButton(getText, label) {
    const b = el('button', { type: 'button', class: 'copy', text: label || 'Copy' });
    b.addEventListener('click', (ev) => { ev.stopPropagation(); copyText(getText(), b); });
    return b;
  }

  document.addEventListener('click', (ev) => {
    const b = ev.target.closest && ev.target.closest('button.copy[data-copy]');
    if (!b) return;
    const src = byId(b.dataset.copy);
    if (src) copyText(src.textContent, b);
  });

  // ---- SQL highlighting ------------------------------------------------------------
  const KEYWORDS = new Set(('select from where and or not in is null as on join inner left right full outer cross ' +
    'group by order having limit offset union all distinct insert into values update set delete returning with ' +
    'recursive case when then else end exists between like ilike any some asc desc nulls first last create index ' +
    'concurrently table alter drop analyze vacuum using true false interval cast over partition window lateral ' +
    'filter except intersect for of only if begin commit rollback select setval statistics system reset default ' +
    'unique primary key references constraint add column type to').split(' '));
  const TOKEN = /(--[^\n]*|\/\*[\s\S]*?\*\/)|('(?:[^']|'')*'?)|("(?:[^"]|"")*"?)|(\$\d+)|(\b\d+(?:\.\d+)?\b)|([A-Za-z_][A-Za-z_0-9$]*)|([\s\S])/g;

  function highlight(text, into) {
    const frag = document.createDocumentFragment();
    let plain = '';
    const flush = () => { if (plain) { frag.appendChild(document.createTextNode(plain)); plain = ''; } };
    const span = (cls, t) => { flush(); frag.appendChild(el('span', { class: cls, text: t })); };
    TOKEN.lastIndex = 0;
    let m;
    while ((m = TOKEN.exec(text)) !== null) {
      if (m[1]) span('tok-com', m[1]);
      else if (m[2]) span('tok-str', m[2]);
      else if (m[3]) span('tok-id', m[3]);
      else if (m[4]) span('tok-param', m[4]);
      else if (m[5]) span('tok-num', m[5]);
      else if (m[6] && KEYWORDS.has(m[6].toLowerCase())) span('tok-kw', m[6]);
      else plain += m[0];
    }
    flush();
    into.textContent = '';
    into.appendChild(frag);
    return into;
  }

  function sqlBlock(text) {
    const pre = highlight(text, el('pre', { class: 'sql' }));
    const lines = text.split('\n').length;
    const box = el('div', { class: 'codebox' }, copyButton(() => text), pre);
    if (lines > 14) {
      pre.classList.add('clip');
      const more = el('button', { type: 'button', class: 'more', text: 'show all ' + lines + ' lines' });
      more.addEventListener('click', () => {
        const clipped = pre.classList.toggle('clip');
        more.textContent = clipped ? 'show all ' + lines + ' lines' : 'show less';
      });
      box.appendChild(more);
    }
    return box;
  }

  // ---- data ------------------------------------------------------------------------
  const DATA = JSON.parse(byId('pg-data').textContent);
  const ROWS = DATA.rows.values.map((v) => Object.fromEntries(DATA.rows.keys.map((k, j) => [k, v[j]])));
  const detailBlock = byId('pg-detail');
  let plainDetails = null;
  let chunked = null;
  const chunkCache = new Map();

  async function gunzipBase64(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let k = 0; k < bin.length; k++) bytes[k] = bin.charCodeAt(k);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).text();
  }

  async function detailOf(i) {
    if (detailBlock.dataset.encoding !== 'gzip') {
      if (plainDetails === null) plainDetails = JSON.parse(detailBlock.textContent);
      return plainDetails[i];
    }
    if (chunked === null) chunked = JSON.parse(detailBlock.textContent);
    const c = Math.floor(i / chunked.size);
    if (!chunkCache.has(c)) chunkCache.set(c, gunzipBase64(chunked.chunks[c]).then((t) => unpacked(JSON.parse(t))));
    return (await chunkCache.get(c))[i % chunked.size];
  }

  // A compressed chunk is [details, trees, raw plans]: each pair's plan trees and raw plans,
  // in the order of the details (a set's generic pair after it), go back in place
  // (planguard.report.html._packed).
  function unpacked(chunk) {
    const [details, trees, raws] = chunk;
    let k = 0;
    for (const d of details) {
      for (const p of d.param_sets || []) {
        for (const x of p.generic ? [p, p.generic] : [p]) {
          x.plans = trees[k];
          x.old.plan_json = raws[k][0];
          x.new.plan_json = raws[k][1];
          k++;
        }
      }
    }
    return details;
  }

  // ---- plan trees --------------------------------------------------------------------
  // The two trees side by side, each in its own pre-order, on aligned rows: the longest
  // chain of paired nodes in the same order on both sides shares rows; the rest get a row
  // of their own with the other side empty.
  function alignRows(oldNodes, newNodes) {
    const newPos = new Map(newNodes.map((n, k) => [n.id, k]));
    const pairs = [];
    oldNodes.forEach((n, k) => { if (n.pair !== null && n.pair !== undefined && newPos.has(n.pair)) pairs.push([k, newPos.get(n.pair)]); });
    // longest increasing subsequence of the NEW positions (pairs are in OLD order)
    const tails = [], prev = new Array(pairs.length).fill(-1), tailIdx = [];
    pairs.forEach((p, k) => {
      let lo = 0, hi = tails.length;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (tails[mid] < p[1]) lo = mid + 1; else hi = mid; }
      tails[lo] = p[1]; tailIdx[lo] = k; prev[k] = lo > 0 ? tailIdx[lo - 1] : -1;
    });
    const chain = [];
    for (let k = tails.length ? tailIdx[tails.length - 1] : -1; k >= 0; k = prev[k]) chain.unshift(pairs[k]);
    const out = [];
    let a = 0, b = 0;
    for (const [pa, pb] of chain) {
      while (a < pa) out.push([oldNodes[a++], null]);
      while (b < pb) out.push([null, newNodes[b++]]);
      out.push([oldNodes[a++], newNodes[b++]]);
    }
    while (a < oldNodes.length) out.push([oldNodes[a++], null]);
    while (b < newNodes.length) out.push([null, newNodes[b++]]);
    return out;
  }

  // What EXPLAIN says of each node (rows, loops, buffers, relation, index, the detail keys) is
  // read from the raw plan, whose nodes depth first are the tree's ids in order:
  // planguard.plantree computes only what EXPLAIN does not say.
  const JOINS = new Set(['Nested Loop', 'Hash Join', 'Merge Join']);
  function rawNodes(raw) {
    const flat = [], stack = raw ? [raw] : [];
    while (stack.length) {
      const d = stack.pop();
      flat.push(d);
      const kids = Array.isArray(d.Plans) ? d.Plans : [];
      for (let k = kids.length - 1; k >= 0; k--) stack.push(kids[k]);
    }
    return flat;
  }
  // A tree comes as columns, one entry per node (planguard.plantree: nodes_of makes the same
  // nodes of them); its nodes are made once, when it is first drawn.
  function withRaw(tree, raw) {
    if (!tree || tree.nodes) return tree;
    const flat = rawNodes(raw);
    const n0 = (v) => (isNum(v) ? v : 0);
    const shown = (v) => v !== null && v !== undefined && v !== '' && !(Array.isArray(v) && !v.length);
    tree.nodes = tree.parent.map((parent, id) => ({ id, parent, label: tree.label[id],
      time_total_ms: tree.time_total_ms[id], exclusive_ms: tree.exclusive_ms[id],
      exclusive_share: tree.exclusive_share[id], pair: tree.pair[id],
      misestimate: tree.misestimate[id] && { factor: tree.misestimate[id][0], dir: tree.misestimate[id][1] },
      badges: tree.badges[id] || [], changed: tree.changed[id] || [] }));
    for (const n of tree.nodes) {
      const d = flat[n.id] || {};
      n.depth = n.parent === null ? 0 : tree.nodes[n.parent].depth + 1;
      n.type = d['Node Type'] || '';
      n.relation = d['Relation Name'] ? (d.Schema ? d.Schema + '.' : '') + d['Relation Name'] : null;
      n.index = d['Index Name'] || null;
      n.join = JOINS.has(n.type) ? n.type : null;
      n.rows_est = n0(d['Plan Rows']);
      n.rows_actual = d['Actual Rows'];
      n.loops = d['Actual Loops'];
      n.rows_total = isNum(n.rows_actual) && isNum(n.loops) ? n.rows_actual * n.loops : null;
      n.time_ms = d['Actual Total Time'];
      n.buffers = { hit: n0(d['Shared Hit Blocks']), read: n0(d['Shared Read Blocks']),
        temp: n0(d['Temp Read Blocks']) + n0(d['Temp Written Blocks']) };
      n.detail = DATA.detail_keys.filter((k) => shown(d[k]))
        .map((k) => [k, Array.isArray(d[k]) ? d[k].map(String).join(', ') : String(d[k])]);
    }
    return tree;
  }

  function shareClass(s) { return !isNum(s) ? '' : s >= 0.9 ? 'x90' : s >= 0.5 ? 'x50' : s >= 0.1 ? 'x10' : ''; }
  function misClass(f) { return f >= 1000 ? 'm1000' : f >= 100 ? 'm100' : f >= 10 ? 'm10' : ''; }

  function nodeCell(n, side, ctx) {
    const cell = el('div', { class: 'pcell', 'data-side': side, 'data-node': n.id });
    const hasKids = ctx.kids[side].get(n.id) > 0;
    const tw = el('span', { class: 'tw', title: hasKids ? 'collapse or expand this node' : null, text: hasKids ? '▾' : '·' });
    if (hasKids) tw.addEventListener('click', (ev) => { ev.stopPropagation(); ctx.toggle(side, n.id); });
    const lbl = el('span', { class: 'lbl', title: n.label });
    // the node's name as EXPLAIN prints it in bold ("Parallel Seq Scan", "GroupAggregate"), then the rest
    const label = n.label || n.type;
    const at = label.indexOf(n.type);
    add(lbl, el('b', { text: at >= 0 ? label.slice(0, at + n.type.length) : n.type }));
    add(lbl, at >= 0 ? label.slice(at + n.type.length) : ' ' + label);
    if (n.join) add(lbl, el('span', { class: 'join', text: n.join }));
    for (const c of n.changed || []) add(lbl, el('span', { class: 'chg', text: c }));
    const share = n.exclusive_share;
    const xc = shareClass(share);
    const xt = el('span', { class: 'xt ' + xc, title: 'exclusive time (this node without its children), all loops, and its share of the plan' });
    if (isNum(n.exclusive_ms)) {
      const bar = el('span', { class: 'share ' + xc }, el('i', { style: 'width:' + Math.max(0, Math.min(100, (share || 0) * 100)).toFixed(1) + '%' }));
      add(xt, [bar, ms(n.exclusive_ms) + ' ms' + (isNum(share) ? ' · ' + pct(share) : '')]);
    } else add(xt, el('span', { class: 'muted', text: 'not run' }));
    const line = el('div', { class: 'pnode', style: 'padding-left:' + (n.depth * 16) + 'px' }, tw, lbl, xt);
    if (ctx.quietOf && ctx.quietOf[side].get(n.id)) {
      const qb = el('button', { type: 'button', class: 'quiet', title: 'children with nothing changed and little time' });
      qb.addEventListener('click', (ev) => { ev.stopPropagation(); ctx.toggleQuiet(side, n.id); });
      lbl.after(qb);
    }
    const meta = el('div', { class: 'pmeta', style: 'padding-left:' + (n.depth * 16 + 20) + 'px' });
    add(meta, 'rows ' + rows(n.rows_est) + ' est → ' + (isNum(n.rows_actual) ? rows(n.rows_actual) : dash));
    if (n.misestimate && n.misestimate.factor >= 2) {
      const f = n.misestimate.factor;
      add(meta, ' ');
      add(meta, el('span', { class: 'mis ' + misClass(f), title: n.misestimate.dir === 'under' ? 'underestimated: more rows than the planner expected' : 'overestimated: fewer rows than the planner expected',
        text: (n.misestimate.dir === 'under' ? '↓' : '↑') + (f >= 100 ? nf0.format(f) : f.toFixed(1)) + '×' }));
    }
    if (isNum(n.loops)) {
      add(meta, ' · ' + (n.loops !== 1 ? num(n.loops) + ' loops, ' + ms(n.time_ms) + ' ms per loop, ' + ms(n.time_total_ms) + ' ms total' +
        (isNum(n.rows_total) ? ', ' + rows(n.rows_total) + ' rows total' : '') : ms(n.time_total_ms) + ' ms'));
    }
    for (const bd of n.badges || []) add(meta, el('span', { class: 'nb ' + bd.kind, text: bd.text }));
    add(cell, [line, meta]);
    if (n.changed && n.changed.length) cell.classList.add('changed');
    lbl.addEventListener('click', () => toggleNodeDetail(cell, n));
    cell.addEventListener('mouseenter', () => ctx.hover(side, n, true));
    cell.addEventListener('mouseleave', () => ctx.hover(side, n, false));
    return cell;
  }

  function toggleNodeDetail(cell, n) {
    const open = cell.querySelector('.pdetail');
    if (open) { open.remove(); return; }
    const t = el('table');
    const rowOf = (k, v) => el('tr', null, el('td', { text: k }), el('td', null, el('code', { text: v })));
    for (const kv of n.detail || []) t.appendChild(rowOf(kv[0], kv[1]));
    const b = n.buffers || {};
    t.appendChild(rowOf('buffers', 'shared hit ' + num(b.hit) + ', read ' + num(b.read) + ', temp ' + num(b.temp)));
    if (n.relation) t.appendChild(rowOf('relation', n.relation));
    if (n.index) t.appendChild(rowOf('index', n.index));
    cell.appendChild(el('div', { class: 'pdetail', style: 'padding-left:' + (n.depth * 16 + 20) + 'px' }, t));
  }

  const WIDE = 12;  // a node with more children than this folds its quiet ones

  function planView(plans, sides, heading) {
    const trees = { old: withRaw(plans.old, sides.old && sides.old.plan_json),
      new: withRaw(plans.new, sides.new && sides.new.plan_json) };
    const oldNodes = trees.old ? trees.old.nodes : [];
    const newNodes = trees.new ? trees.new.nodes : [];
    const both = !!(trees.old && trees.new);
    const kids = { old: new Map(), new: new Map() };
    const byNode = { old: new Map(), new: new Map() };
    for (const s of ['old', 'new']) {
      for (const n of (trees[s] ? trees[s].nodes : [])) {
        byNode[s].set(n.id, n);
        kids[s].set(n.id, 0);
        if (n.parent !== null && n.parent !== undefined) kids[s].set(n.parent, (kids[s].get(n.parent) || 0) + 1);
      }
    }
    const collapsed = { old: new Set(), new: new Set() };
    const quiet = { old: new Set(), new: new Set() };  // folded behind their parent's button
    const quietOf = { old: new Map(), new: new Map() };  // parent id -> how many
    const showQuiet = { old: new Set(), new: new Set() };  // parents whose quiet children show
    const cells = { old: new Map(), new: new Map() };
    const rowEls = [];
    const other = (s) => (s === 'old' ? 'new' : 'old');
    const ctx = {
      kids,
      toggle(side, id) {
        const on = !collapsed[side].has(id);
        const n = byNode[side].get(id);
        for (const [s, nid] of [[side, id], [other(side), n && n.pair]]) {
          if (nid === null || nid === undefined || !kids[s].get(nid)) continue;
          if (on) collapsed[s].add(nid); else collapsed[s].delete(nid);
        }
        refresh();
      },
      quietOf,
      toggleQuiet(side, id) {
        const on = !showQuiet[side].has(id);
        const n = byNode[side].get(id);
        for (const [s, nid] of [[side, id], [other(side), n && n.pair]]) {
          if (nid === null || nid === undefined) continue;
          if (on) showQuiet[s].add(nid); else showQuiet[s].delete(nid);
        }
        refresh();
      },
      hover(side, n, on) {
        const c = n.pair !== null && n.pair !== undefined && cells[other(side)].get(n.pair);
        if (c) c.classList.toggle('hl', on);
        const me = cells[side].get(n.id);
        if (me) me.classList.toggle('hl', on);
      },
    };
    // big plans: start with every node folded whose children hold nothing changed and little
    // time (a node that matters itself stays in view, folded: an Append over 160 partitions)
    const biggest = Math.max(oldNodes.length, newNodes.length);
    if (biggest > 60) {
      for (const s of ['old', 'new']) {
        const nodes = trees[s] ? trees[s].nodes : [];
        const below = new Map();  // node id -> something that matters lies below it
        for (let k = nodes.length - 1; k >= 0; k--) {
          const n = nodes[k];
          const mine = (n.changed && n.changed.length > 0) || (n.exclusive_share || 0) >= 0.1 ||
            (n.misestimate && n.misestimate.factor >= 100) || below.get(n.id);
          if (mine && n.parent !== null && n.parent !== undefined) below.set(n.parent, true);
        }
        for (const n of nodes) if (kids[s].get(n.id) && !below.get(n.id) && n.depth > 0) collapsed[s].add(n.id);
        // under a wide node (an Append over many partitions), the quiet children fold away
        // behind one "+N quiet" button on the parent: the one that matters stays in view
        for (const n of nodes) {
          const p = n.parent;
          if (p === null || p === undefined || (kids[s].get(p) || 0) <= WIDE) continue;
          const mine = (n.changed && n.changed.length > 0) || (n.exclusive_share || 0) >= 0.1 ||
            (n.misestimate && n.misestimate.factor >= 100) || below.get(n.id);
          if (!mine) { quiet[s].add(n.id); quietOf[s].set(p, (quietOf[s].get(p) || 0) + 1); }
        }
      }
    }
    const grid = el('div', { class: 'plan-grid' + (both ? '' : ' single') });
    for (const s of ['old', 'new']) {
      if (!trees[s]) continue;
      const t = trees[s];
      const side = sides[s] || {};
      add(grid, el('div', { class: 'plan-head', text: s.toUpperCase() + (heading ? ' ' + heading : '') + ': ' +
        (isNum(t.total_ms) ? ms(t.total_ms) + ' ms' : 'not executed') + ', ' + t.nodes.length + ' node' + (t.nodes.length === 1 ? '' : 's') +
        (isNum(side.shared_buffers) ? ', ' + num(side.shared_buffers) + ' buffers' : '') }));
    }
    const pairsOf = both ? alignRows(oldNodes, newNodes) : (trees.old ? oldNodes.map((n) => [n, null]) : newNodes.map((n) => [null, n]));
    for (const [o, n] of pairsOf) {
      const r = [];
      for (const [s, node] of [['old', o], ['new', n]]) {
        if (!trees[s]) continue;
        if (node) { const c = nodeCell(node, s, ctx); cells[s].set(node.id, c); r.push(c); } else r.push(el('div', { class: 'pcell empty' }));
      }
      r.forEach((c) => grid.appendChild(c));
      rowEls.push({ o, n, els: r });
    }
    function hiddenSet(s) {
      const hidden = new Set();
      for (const n of (trees[s] ? trees[s].nodes : [])) {
        const p = n.parent;
        if (p !== null && p !== undefined && (hidden.has(p) || collapsed[s].has(p) ||
            (quiet[s].has(n.id) && !showQuiet[s].has(p)))) hidden.add(n.id);
      }
      return hidden;
    }
    function refresh() {
      const h = { old: hiddenSet('old'), new: hiddenSet('new') };
      for (const s of ['old', 'new']) {
        for (const [id, c] of cells[s]) {
          const tw = c.querySelector('.tw');
          if (kids[s].get(id)) tw.textContent = collapsed[s].has(id) ? '▸' : '▾';
          const qb = c.querySelector('button.quiet');
          if (qb) {
            qb.textContent = showQuiet[s].has(id) ? 'hide the ' + quietOf[s].get(id) + ' quiet' : '+' + quietOf[s].get(id) + ' quiet';
            qb.style.display = collapsed[s].has(id) ? 'none' : '';
          }
        }
      }
      for (const row of rowEls) {
        const ho = !row.o || h.old.has(row.o.id);
        const hn = !row.n || h.new.has(row.n.id);
        const hideRow = ho && hn;
        row.els.forEach((c) => { c.style.display = hideRow ? 'none' : ''; });
        if (!hideRow) {
          for (const c of row.els) {
            const s = c.dataset.side;
            c.classList.toggle('gone', !!s && h[s].has(Number(c.dataset.node)));
          }
        }
      }
    }
    refresh();
    const bar = el('div', { class: 'plan-bar' });
    const setAll = (on) => {
      for (const s of ['old', 'new']) {
        for (const [id, k] of kids[s]) { if (k && on) collapsed[s].add(id); else collapsed[s].delete(id); }
        for (const id of quietOf[s].keys()) { if (on) showQuiet[s].delete(id); else showQuiet[s].add(id); }
      }
      refresh();
    };
    add(bar, [el('button', { type: 'button', text: 'expand all', onclick: () => setAll(false) }),
      el('button', { type: 'button', text: 'collapse all', onclick: () => setAll(true) }),
      el('span', { class: 'legend muted' },
        el('span', { text: 'time: exclusive, share of the plan (10 / 50 / 90 %)' }),
        el('span', { text: 'rows: estimated → actual, ↓ under / ↑ over-estimated' }),
        both ? el('span', { class: 'chg', text: 'changed' }) : null)]);
    const view = el('div', { class: 'plan' }, bar);
    const insights = (plans.insights || []).filter((x) => x.side === 'new');
    if (insights.length) {
      const ul = el('ul', { class: 'insights', title: 'seen on NEW and not on OLD' });
      for (const ins of insights) {
        const li = el('li', null, el('strong', { text: 'NEW only: ' }), ins.text);
        li.addEventListener('click', () => {
          const c = cells.new.get(ins.node);
          if (!c) return;
          // unfold the way to it
          let p = byNode.new.get(ins.node);
          while (p && p.parent !== null && p.parent !== undefined) { collapsed.new.delete(p.parent); p = byNode.new.get(p.parent); }
          refresh();
          c.scrollIntoView({ block: 'nearest' });
          c.classList.add('hl');
          setTimeout(() => c.classList.remove('hl'), 1600);
        });
        ul.appendChild(li);
      }
      view.appendChild(ul);
    }
    view.appendChild(grid);
    // the raw EXPLAIN JSON, one click away
    const raws = ['old', 'new'].filter((s) => sides[s] && sides[s].plan_json);
    if (raws.length) {
      let rawBox = null;
      add(bar, el('button', { type: 'button', class: 'rawbtn', text: 'raw EXPLAIN JSON', onclick: () => {
        if (rawBox) { rawBox.remove(); rawBox = null; return; }
        rawBox = el('div', { class: 'raw cols' });
        for (const s of raws) {
          const text = JSON.stringify(sides[s].plan_json, null, 2);
          rawBox.appendChild(el('div', null, el('strong', { text: s.toUpperCase() + ' ' }), copyButton(() => text, 'Copy JSON'), el('pre', { class: 'rawjson', text })));
        }
        view.appendChild(rawBox);
      } }));
    }
    return view;
  }

  function planText(side, label) {
    if (side.error) return el('div', null, el('h4', { text: label }), el('pre', { class: 'sql', text: 'ERROR: ' + side.error }));
    if (!side.plan_text) return null;
    return el('div', null, el('h4', { text: label }), el('pre', { class: 'plantext', text: side.plan_text }));
  }

  function plansOf(x, heading) {
    if (x.plans && (x.plans.old || x.plans.new)) {
      const out = [planView(x.plans, { old: x.old, new: x.new }, heading)];
      for (const s of ['old', 'new']) {
        if (!x.plans[s] && (x[s].plan_text || x[s].error)) out.push(planText(x[s], s.toUpperCase() + (heading ? ' ' + heading : '')));
      }
      return out;
    }
    const o = planText(x.old, 'OLD' + (heading ? ' ' + heading : '')), n = planText(x.new, 'NEW' + (heading ? ' ' + heading : ''));
    return o || n ? el('div', { class: 'cols' }, o || el('div'), n || el('div')) : null;
  }

  // ---- statement detail ------------------------------------------------------------
  function spread(times) {
    if (!times || !times.length) return dash;
    const t = times.slice().sort((a, b) => a - b);
    return ms(t[0]) + ' – ' + ms(t[t.length - 1]);
  }

  function strip(times, lo, hi) {
    // one tick per run on a log scale shared by both sides
    const w = 120, h = 12;
    const s = svg('svg', { class: 'strip', width: w, height: h, viewBox: '0 0 ' + w + ' ' + h, role: 'img' });
    if (!times || !times.length || !(hi > 0)) return s;
    const l0 = Math.log10(Math.max(lo, 1e-3)), l1 = Math.log10(Math.max(hi, 1e-3));
    const span = l1 - l0 || 1;
    add(s, svg('line', { x1: 0, x2: w, y1: h / 2, y2: h / 2, stroke: '#d0d7de' }));
    for (const t of times) {
      const x = 2 + (w - 4) * (Math.log10(Math.max(t, 1e-3)) - l0) / span;
      add(s, svg('line', { x1: x, x2: x, y1: 1, y2: h - 1, stroke: '#57606a', 'stroke-width': 1.5 }));
    }
    return s;
  }

  function timingTable(x) {
    const all = [...(x.old.times_ms || []), ...(x.new.times_ms || [])].filter(isNum);
    const lo = all.length ? Math.min(...all) : 0, hi = all.length ? Math.max(...all) : 0;
    const t = el('table', { class: 'timing' },
      el('thead', null, el('tr', null, ['', 'median ms', 'spread (min – max)', 'runs', '', 'shared buffers', 'temp buffers', 'warm-up'].map((h, k) => el('th', { class: k && k !== 4 && k !== 7 ? 'num' : null, text: h })))));
    const body = el('tbody');
    for (const s of ['old', 'new']) {
      const m = x[s];
      const w = m.warmup;
      body.appendChild(el('tr', null, el('td', { text: s.toUpperCase() }), el('td', { class: 'num', text: ms(m.median_ms) }),
        el('td', { class: 'num', text: spread(m.times_ms) }), el('td', { class: 'num', text: num(m.runs) }),
        el('td', null, strip(m.times_ms, lo, hi)), el('td', { class: 'num', text: num(m.shared_buffers) }),
        el('td', { class: 'num', text: num(m.temp_buffers) }),
        el('td', { class: 'muted', text: w ? w.runs + ' run' + (w.runs === 1 ? '' : 's') + ', ' + num(w.first_read) + ' → ' + num(w.last_read) + ' blocks read' : '' })));
    }
    t.appendChild(body);
    return t;
  }

  function evidence(tm) {
    if (!tm) return null;
    const bits = ['NEW/OLD ' + ratio(tm.ratio) + '×', tm.paired ? tm.runs + ' pairs' : tm.runs + ' runs (not paired)',
      tm.agree + ' agree', tm.p === null || tm.p === undefined ? null : 'p = ' + tm.p, 'noise floor ×' + tm.noise_floor,
      tm.within_noise ? 'within noise' : null, tm.same_work ? 'same plan and buffers' : null].filter(Boolean);
    return el('p', { class: 'muted', text: 'Evidence: ' + bits.join(' · ') });
  }

  function changesList(changes) {
    if (!changes || !changes.length) return null;
    return el('ul', { class: 'changes' }, changes.map((c) => el('li', null, el('code', { text: c.kind }), ' ' + c.detail)));
  }

  function paramSet(p, decisive, statementReason) {
    const box = el('div', { class: 'pset' });
    const h = el('h4', null, 'Parameters “' + p.label + '” ', badge(p.status));
    if (p.label === decisive) add(h, el('span', { class: 'muted', text: ' · decisive' }));
    if (p.guessed && p.guessed.length) add(h, [' ', el('span', { class: 'badge warning', title: 'values not taken from real data', text: p.guessed.length + ' guessed' })]);
    box.appendChild(h);
    if (p.values && p.values.length) {
      const t = el('table', { class: 'values' });
      p.values.forEach((v, k) => {
        const guessed = (p.guessed || []).indexOf(k + 1) >= 0;
        t.appendChild(el('tr', { class: guessed ? 'guess' : null }, el('td', null, el('code', { text: '$' + (k + 1) })),
          el('td', null, el('code', { class: 'val', text: typeof v === 'string' ? v : JSON.stringify(v) })),
          el('td', { class: 'muted', text: (p.sources || [])[k] || '' })));
      });
      box.appendChild(t);
    }
    if (p.reason && p.reason !== statementReason) box.appendChild(el('p', { class: 'muted', text: p.reason }));
    box.appendChild(timingTable(p));
    add(box, evidence(p.timing));
    if (p.confirmation) box.appendChild(el('p', { class: 'muted' }, 'Second, independent round of pairs: ', badge(p.confirmation.status), ' ' + (p.confirmation.reason || '')));
    if (p.results) box.appendChild(el('p', { class: 'muted', text: 'Results compared: ' + p.results.outcome }));
    add(box, changesList(p.changes));
    add(box, plansOf(p, ''));
    const g = p.generic;
    if (g) {
      const picks = g.plan_cache_picks_generic || {};
      const yn = (v) => (v === true ? 'yes' : v === false ? 'no' : 'unknown');
      const d = el('details', { class: 'generic' }, el('summary', null, 'Generic plan (as a prepared statement): ', badge(g.status),
        ' OLD ' + ms(g.old.median_ms) + ' ms → NEW ' + ms(g.new.median_ms) + ' ms; plan cache picks it on NEW: ' + yn(picks.new)));
      let built = false;
      d.addEventListener('toggle', () => {
        if (!d.open || built) return;
        built = true;
        if (g.reason) d.appendChild(el('p', { class: 'muted', text: g.reason }));
        d.appendChild(timingTable(g));
        add(d, changesList(g.changes));
        add(d, plansOf(g, 'generic'));
      });
      box.appendChild(d);
    }
    return box;
  }

  function buildDetail(row, d) {
    const box = el('div', { class: 'sdetail' });
    box.appendChild(sqlBlock(d.sql));
    add(box, el('div', { class: 'sub', text: row.kind + ' · fingerprint ' + row.fp + (row.tables.length ? ' · ' + row.tables.join(', ') : '') }));
    if (d.reason) box.appendChild(el('p', { text: d.reason }));
    if (d.attribution) {
      box.appendChild(el('p', { class: 'attribution' }, 'attribution: ', attrBadge(d.attribution, d.attribution_note, false), ' ',
        d.attribution_note || ATTR[d.attribution] || ''));
    }
    const im = d.impact;
    if (im && isNum(im.calls_per_second)) {
      box.appendChild(el('p', { class: 'muted', text: 'At production rates: ' + im.calls_per_second + ' calls/s, ' +
        (im.delta_ms >= 0 ? '+' : '') + ms(im.delta_ms) + ' ms per call → ' + sessions(im.extra_active_sessions) + ' active sessions' +
        (isNum(im.extra_db_seconds_per_hour) ? ', ' + (im.extra_db_seconds_per_hour >= 0 ? '+' : '') + nf1.format(im.extra_db_seconds_per_hour) + ' s of DB time per hour' : '') }));
    }
    for (const p of d.param_sets || []) box.appendChild(paramSet(p, d.decisive, d.reason));
    const po = d.plan_only;
    if (po) {
      box.appendChild(el('h4', { text: 'Generic plans compared without execution' }));
      if (po.error) box.appendChild(el('p', { class: 'muted', text: po.error }));
      add(box, changesList(po.changes));
      const sideOf = (s) => (po[s] ? el('div', null, el('h4', { text: s.toUpperCase() + ': estimated cost ' + num(po[s].total_cost) }), el('pre', { text: po[s].plan_text })) : el('div'));
      box.appendChild(el('div', { class: 'cols' }, sideOf('old'), sideOf('new')));
    }
    return box;
  }

  // ---- statements table --------------------------------------------------------------
  const body = byId('stmt-body');
  const PAGE = 50;
  const state = { key: null, dir: 1, page: 0, open: new Set() };
  const detailCache = new Map();
  const statusRank = new Map(DATA.statuses.map((s, k) => [s, k]));
  const filt = { status: byId('f-status'), table: byId('f-table'), kind: byId('f-kind'), text: byId('f-text'), ratio: byId('f-ratio'), aas: byId('f-aas') };

  function fillSelect(sel, values) {
    for (const v of values) sel.appendChild(el('option', { value: v[0], text: v[1] }));
  }

  function initFilters() {
    const counts = new Map();
    ROWS.forEach((r) => counts.set(r.status, (counts.get(r.status) || 0) + 1));
    fillSelect(filt.status, DATA.statuses.filter((s) => counts.has(s)).map((s) => [s, s + ' (' + counts.get(s) + ')']));
    const tables = new Set(), kinds = new Set();
    ROWS.forEach((r) => { r.tables.forEach((t) => tables.add(t)); if (r.kind) kinds.add(r.kind); });
    fillSelect(filt.table, [...tables].sort().map((t) => [t, t]));
    fillSelect(filt.kind, [...kinds].sort().map((t) => [t, t]));
    for (const k of Object.keys(filt)) filt[k].addEventListener('input', () => { state.page = 0; render(); });
    document.querySelectorAll('#stmt-table th[data-key]').forEach((th) => {
      th.setAttribute('tabindex', '0');
      const go = () => {
        const key = th.dataset.key;
        if (state.key === key) state.dir = -state.dir;
        else { state.key = key; state.dir = key === 'q' || key === 'status' ? 1 : -1; }
        document.querySelectorAll('#stmt-table th[data-key]').forEach((o) => o.removeAttribute('aria-sort'));
        th.setAttribute('aria-sort', state.dir > 0 ? 'ascending' : 'descending');
        state.page = 0;
        render();
      };
      th.addEventListener('click', go);
      th.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); go(); } });
    });
  }

  function visible() {
    const st = filt.status.value, tb = filt.table.value, kd = filt.kind.value;
    const text = filt.text.value.trim().toLowerCase();
    const minR = parseFloat(filt.ratio.value), minA = parseFloat(filt.aas.value);
    let out = ROWS.filter((r) => (!st || r.status === st) && (!tb || r.tables.indexOf(tb) >= 0) && (!kd || r.kind === kd) &&
      (!text || r.q.toLowerCase().indexOf(text) >= 0 || r.fp.toLowerCase().indexOf(text) >= 0 || r.tables.some((t) => t.toLowerCase().indexOf(text) >= 0)) &&
      (isNaN(minR) || (isNum(r.ratio) && r.ratio >= minR)) && (isNaN(minA) || (isNum(r.aas) && r.aas >= minA)));
    if (state.key) {
      const k = state.key, dir = state.dir;
      const val = k === 'status' ? (r) => statusRank.get(r.status) : (r) => r[k];
      out = out.slice().sort((a, b) => {
        const x = val(a), y = val(b);
        const nx = x === null || x === undefined, ny = y === null || y === undefined;
        if (nx || ny) return nx && ny ? a.i - b.i : nx ? 1 : -1;  // unknown values last, either way
        if (typeof x === 'string') return dir * x.localeCompare(y) || a.i - b.i;
        return dir * (x - y) || a.i - b.i;
      });
    }
    return out;
  }

  function changesCell(changes) {
    if (!changes.length) return el('td', null, el('span', { class: 'muted', text: 'none' }));
    const ul = el('ul', { class: 'changes short', title: changes.join('\n') }, changes.slice(0, 2).map((c) => el('li', { text: c })));
    if (changes.length > 2) ul.appendChild(el('li', { class: 'muted', text: '+' + (changes.length - 2) + ' more' }));
    return el('td', null, ul);
  }

  function statementRow(r) {
    const open = state.open.has(r.i);
    const btn = el('button', { type: 'button', class: 'expand', 'aria-expanded': open ? 'true' : 'false', title: 'details and plans', text: open ? '▾' : '▸' });
    const statusCell = el('td', null, badge(r.status));
    if (r.generic_status === 'regressed' || r.generic_status === 'error') add(statusCell, [el('br'), el('span', { class: 'badge small ' + r.generic_status, title: 'the generic plan (prepared statement): ' + r.generic_status, text: 'generic: ' + r.generic_status })]);
    if (r.attr) add(statusCell, [el('br'), attrBadge(r.attr, r.attr_note, true)]);
    const q = el('code', { class: 'q', title: r.q, text: r.q });
    const tr = el('tr', { class: 'statement' + (open ? ' open' : ''), 'data-status': r.status, 'data-i': r.i, id: 'stmt-' + r.fp },
      el('td', null, btn), statusCell,
      el('td', null, q, el('span', { class: 'sub', text: (r.kind || '') + ' · ' + r.fp.slice(0, 8) + (r.tables.length ? ' · ' + r.tables.join(', ') : '') })),
      el('td', { class: 'num', text: isNum(r.cps) ? (r.cps >= 10 ? nf0.format(r.cps) : r.cps.toFixed(2)) : dash }),
      el('td', { class: 'num', text: ms(r.old_ms) }), el('td', { class: 'num', text: ms(r.new_ms) }),
      el('td', { class: 'num ' + (isNum(r.ratio) && DATA.time_ratio && r.ratio >= DATA.time_ratio ? 'worse' : isNum(r.ratio) && DATA.time_ratio && r.ratio * DATA.time_ratio <= 1 ? 'better' : ''), text: ratio(r.ratio) }),
      el('td', { class: 'num ' + (isNum(r.aas) && r.aas >= 0.01 ? 'worse' : ''), text: sessions(r.aas) }),
      el('td', { class: 'num ' + (isNum(r.old_buf) && isNum(r.new_buf) && r.new_buf > 2 * r.old_buf + 100 ? 'worse' : ''), text: num(r.old_buf) + ' → ' + num(r.new_buf) }),
      changesCell(r.changes));
    const toggle = () => { if (state.open.has(r.i)) state.open.delete(r.i); else state.open.add(r.i); render(); };
    btn.addEventListener('click', toggle);
    q.addEventListener('click', toggle);
    return tr;
  }

  function detailRow(r) {
    const td = el('td', { colspan: 10 });
    const tr = el('tr', { class: 'detail', 'data-status': r.status, 'data-i': r.i }, td);
    if (detailCache.has(r.i)) { td.appendChild(detailCache.get(r.i)); return tr; }
    td.appendChild(el('span', { class: 'muted', text: 'loading…' }));
    detailOf(r.i).then((d) => {
      const box = buildDetail(r, d);
      detailCache.set(r.i, box);
      td.textContent = '';
      td.appendChild(box);
    }).catch((e) => { td.textContent = 'cannot read this statement\'s detail: ' + e; });
    return tr;
  }

  function render() {
    const rowsShown = visible();
    const pages = Math.max(1, Math.ceil(rowsShown.length / PAGE));
    if (state.page >= pages) state.page = pages - 1;
    const slice = rowsShown.slice(state.page * PAGE, (state.page + 1) * PAGE);
    const frag = document.createDocumentFragment();
    for (const r of slice) {
      frag.appendChild(statementRow(r));
      if (state.open.has(r.i)) frag.appendChild(detailRow(r));
    }
    body.textContent = '';
    if (!slice.length) body.appendChild(el('tr', null, el('td', { colspan: 10, class: 'muted', text: 'No statement matches these filters.' })));
    body.appendChild(frag);
    byId('f-count').textContent = rowsShown.length === ROWS.length ? ROWS.length + ' statements' : rowsShown.length + ' of ' + ROWS.length + ' statements';
    const pager = byId('pager');
    pager.textContent = '';
    if (pages > 1) {
      add(pager, [el('button', { type: 'button', class: 'prev', disabled: state.page === 0, text: '‹ previous', onclick: () => { state.page--; render(); } }),
        el('span', { text: 'page ' + (state.page + 1) + ' of ' + pages + ' (' + PAGE + ' per page)' }),
        el('button', { type: 'button', class: 'next', disabled: state.page >= pages - 1, text: 'next ›', onclick: () => { state.page++; render(); } })]);
    }
  }

  // Show one statement: clear the filters that hide it, go to its page, open it.
  function focusStatement(i) {
    const r = ROWS[i];
    if (!r) return;
    for (const k of Object.keys(filt)) filt[k].value = '';
    filt.text.value = r.fp;
    state.page = 0;
    state.open.add(i);
    render();
    const tr = byId('stmt-' + r.fp);
    if (tr) tr.scrollIntoView({ block: 'start' });
  }

  document.addEventListener('click', (ev) => {
    const b = ev.target.closest && ev.target.closest('button.showstmt[data-stmt]');
    if (!b) return;
    const r = ROWS.find((x) => x.fp.indexOf(b.dataset.stmt) === 0);
    if (r) focusStatement(r.i);
  });

  // ---- charts ------------------------------------------------------------------------
  const BAD = new Set(['regressed', 'error']), SLOW = new Set(['slower_same_plan', 'unstable']);

  function logTicks(lo, hi) {
    const out = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(Math.pow(10, e));
    return out;
  }

  function tickLabel(v) { return v >= 1000 ? nf0.format(v / 1000) + ' s' : v >= 1 ? nf0.format(v) : String(Number(v.toPrecision(1))); }

  function scatter() {
    const host = byId('chart-scatter');
    if (!host) return;
    const pts = DATA.points.filter((p) => p[2] > 0 && p[3] > 0);
    if (!pts.length) { host.appendChild(el('p', { class: 'muted', text: 'No statement was timed on both sides.' })); return; }
    const W = 560, H = 380, L = 54, R = 14, T = 12, B = 40;
    let lo = Infinity, hi = 0;
    for (const p of pts) { lo = Math.min(lo, p[2], p[3]); hi = Math.max(hi, p[2], p[3]); }
    lo = Math.pow(10, Math.floor(Math.log10(lo))); hi = Math.pow(10, Math.ceil(Math.log10(hi)));
    if (hi <= lo) hi = lo * 10;
    const l0 = Math.log10(lo), span = Math.log10(hi) - l0;
    const X = (v) => L + (W - L - R) * (Math.log10(v) - l0) / span;
    const Y = (v) => H - B - (H - T - B) * (Math.log10(v) - l0) / span;
    const s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'OLD against NEW median time, log-log' });
    for (const t of logTicks(lo, hi)) {
      add(s, [svg('line', { class: 'grid', x1: X(t), x2: X(t), y1: T, y2: H - B }), svg('line', { class: 'grid', x1: L, x2: W - R, y1: Y(t), y2: Y(t) }),
        svg('text', { x: X(t), y: H - B + 14, 'text-anchor': 'middle', text: tickLabel(t) }),
        svg('text', { x: L - 6, y: Y(t) + 4, 'text-anchor': 'end', text: tickLabel(t) })]);
    }
    add(s, [svg('line', { class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B }), svg('line', { class: 'axis', x1: L, x2: L, y1: T, y2: H - B }),
      svg('text', { x: (L + W - R) / 2, y: H - 6, 'text-anchor': 'middle', text: 'OLD median (ms)' }),
      svg('text', { x: 12, y: (T + H - B) / 2, 'text-anchor': 'middle', transform: 'rotate(-90 12 ' + (T + H - B) / 2 + ')', text: 'NEW median (ms)' }),
      svg('line', { class: 'diag', x1: X(lo), y1: Y(lo), x2: X(hi), y2: Y(hi) })]);
    const tr = DATA.time_ratio;
    if (tr && tr > 1) {
      add(s, [svg('line', { class: 'thr', x1: X(lo), y1: Y(lo * tr), x2: X(hi / tr), y2: Y(hi) }),
        svg('text', { x: X(hi / tr) - 4, y: Y(hi) + 12, 'text-anchor': 'end', text: 'y = ' + tr + 'x' })]);
    }
    add(s, svg('text', { x: X(hi) - 4, y: Y(hi) + 26, 'text-anchor': 'end', text: 'y = x' }));
    const order = pts.slice().sort((a, b) => (BAD.has(a[4]) ? 1 : 0) - (BAD.has(b[4]) ? 1 : 0));  // regressions on top
    for (const p of order) {
      const cls = BAD.has(p[4]) ? 'pt-bad' : SLOW.has(p[4]) ? 'pt-slow' : p[4] === 'improved' ? 'pt-good' : 'pt-same';
      const row = ROWS[p[0]];
      const c = svg('circle', { class: cls, cx: X(p[2]).toFixed(1), cy: Y(p[3]).toFixed(1), r: BAD.has(p[4]) ? 5 : 3.5, 'data-i': p[0], 'data-status': p[4] },
        svg('title', { text: p[4] + ' · ' + p[1] + ': OLD ' + ms(p[2]) + ' ms → NEW ' + ms(p[3]) + ' ms\n' + row.q.slice(0, 200) }));
      c.addEventListener('click', () => focusStatement(p[0]));
      s.appendChild(c);
    }
    host.appendChild(s);
  }

  function bars() {
    const host = byId('chart-bars');
    if (!host) return;
    const top = ROWS.filter((r) => isNum(r.aas) && r.aas > 0).sort((a, b) => b.aas - a.aas).slice(0, 10);
    if (!top.length) { host.appendChild(el('p', { class: 'muted', text: 'No statement adds active sessions at production rates.' })); return; }
    const W = 560, rowH = 30, T = 6, L = 8, R = 70;
    const H = T + top.length * rowH + 6;
    const max = top[0].aas;
    const s = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'top statements by added active sessions' });
    top.forEach((r, k) => {
      const y = T + k * rowH;
      const w = Math.max(2, (W - L - R) * r.aas / max);
      const label = r.status + ' · ' + r.q.replace(/\s+/g, ' ').slice(0, 80);
      const bar = svg('rect', { class: 'bar', x: L, y: y + 14, width: w.toFixed(1), height: 11, rx: 2, 'data-i': r.i }, svg('title', { text: sessions(r.aas) + ' active sessions\n' + r.q.slice(0, 300) }));
      bar.addEventListener('click', () => focusStatement(r.i));
      add(s, [svg('text', { x: L, y: y + 11, text: label }), bar, svg('text', { x: L + w + 6, y: y + 23, text: sessions(r.aas) })]);
    });
    host.appendChild(s);
  }

  // ---- start ---------------------------------------------------------------------------
  function start() {
    document.querySelectorAll('pre.hl').forEach((pre) => highlight(pre.textContent, pre));
    if (body) {
      initFilters();
      render();
    }
    // the charts after the first paint
    requestAnimationFrame(() => setTimeout(() => { scatter(); bars(); document.body.dataset.ready = '1'; }, 0));
  }
  start();
})();
