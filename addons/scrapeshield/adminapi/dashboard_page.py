# ruff: noqa: E501  (minified inline CSS/JS: one rule or statement group per line)
"""The dashboard page: HTML with its CSS and JS inline (the CSP admits exactly these by hash)."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>ScrapeShield dashboard</title>
<style>
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d232b;--dim:#667085;--line:#e4e7ec;--ok:#12805c;--bad:#c0362c;--warn:#b54708;
--allow:#12805c;--delay:#6941c6;--throttle:#b54708;--challenge:#1570ef;--block:#c0362c;--drop:#7a271a;--log:#667085}
*{box-sizing:border-box}body{margin:0;font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:var(--bg);color:var(--ink)}
header{display:flex;flex-wrap:wrap;gap:16px;align-items:center;padding:12px 20px;background:#101828;color:#fff}
header h1{font-size:18px;margin:0 12px 0 0}.pill{padding:2px 10px;border-radius:999px;font-weight:600;background:#344054}
.pill.ok{background:var(--ok)}.pill.bad{background:var(--bad)}.pill.warn{background:var(--warn)}
header .meta{color:#d0d5dd}main{display:grid;grid-template-columns:repeat(auto-fit,minmax(340px,1fr));gap:16px;padding:16px 20px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px}
section h2{font-size:14px;margin:0 0 8px;color:var(--dim);text-transform:uppercase;letter-spacing:.04em}
.big{font-size:32px;font-weight:700}.sub{color:var(--dim);font-size:12px}table{width:100%;border-collapse:collapse}
td,th{padding:3px 4px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}th{color:var(--dim);font-weight:600}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.bar{height:10px;border-radius:3px;background:#98a2b3;min-width:1px}
.row{display:flex;gap:20px;flex-wrap:wrap}.kpi{min-width:110px}.key{font-family:ui-monospace,monospace;word-break:break-all}
svg{width:100%;height:90px;display:block}.legend span{margin-right:10px;white-space:nowrap}.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
.empty{color:var(--dim);font-style:italic}.w40{width:40%}#err{color:var(--bad);font-weight:600}
</style></head>
<body>
<header><h1>ScrapeShield</h1><span id="ready" class="pill">loading…</span><span id="storepill" class="pill">store</span>
<span class="meta" id="policy">policy</span><span class="meta" id="uptime"></span><span id="err"></span></header>
<main>
<section><h2>Requests per second</h2><div class="row" id="kpis"></div><svg id="spark" viewBox="0 0 300 90" preserveAspectRatio="none"></svg>
<div class="legend sub" id="legend"></div></section>
<section><h2>Decisions per second by rule</h2><table id="rules"><thead><tr><th>rule</th><th>action</th><th class="n">per s</th><th class="n">total</th></tr></thead><tbody></tbody></table></section>
<section><h2>Top refused keys</h2><table id="topkeys"><thead><tr><th>key</th><th class="n">refused</th></tr></thead><tbody></tbody></table></section>
<section><h2>Active bans</h2><table id="bans"><thead><tr><th>key</th><th>reason</th><th class="n">left</th></tr></thead><tbody></tbody></table></section>
<section><h2>Signals seen</h2><table id="signals"><thead><tr><th>signal</th><th class="n">requests</th><th class="w40"></th></tr></thead><tbody></tbody></table></section>
<section><h2>Scores at decision</h2><div id="scores"></div></section>
<section><h2>Challenges</h2><div class="row" id="chkpis"></div><table id="challenges"><thead><tr><th>outcome</th><th class="n">count</th></tr></thead><tbody></tbody></table></section>
<section><h2>Store and policy</h2><table id="state"><tbody></tbody></table></section>
</main>
<script>
"use strict";
const ACTIONS=["allow","delay","throttle","challenge","block","drop","log"];
const HISTORY=60,POLL_MS=2000;let prev=null;const hist=[];
const $=id=>document.getElementById(id);
function el(tag,attrs,...kids){const e=document.createElement(tag);for(const[k,v]of Object.entries(attrs||{})){if(k==="class")e.className=v;else e.setAttribute(k,v);}
for(const k of kids)e.append(k instanceof Node?k:document.createTextNode(String(k)));return e;}
function fill(id,rows,empty,cols){const tb=$(id).tBodies[0];tb.replaceChildren();if(!rows.length){tb.append(el("tr",{},el("td",{class:"empty",colspan:cols||2},empty)));return;}
for(const r of rows)tb.append(r);}
function fmt(n){return n>=100?n.toFixed(0):n>=10?n.toFixed(1):n.toFixed(2);}
function ago(s){s=Math.max(0,Math.round(s));if(s<120)return s+"s";if(s<7200)return Math.round(s/60)+"m";return Math.round(s/3600)+"h";}
function color(a){return getComputedStyle(document.documentElement).getPropertyValue("--"+a)||"#999";}
function render(d){
  const dt=prev?Math.max(0.001,d.time-prev.time):0,before=new Map();
  if(prev)for(const x of prev.decisions)before.set(x.rule+"|"+x.action+"|"+x.enforced,x.count);
  const byAction={};let total=0;const rules=[];
  for(const x of d.decisions){const was=before.get(x.rule+"|"+x.action+"|"+x.enforced);const rate=dt?(x.count-(was||0))/dt:0;
    const act=x.enforced?x.action:"allow";byAction[act]=(byAction[act]||0)+rate;total+=rate;rules.push({...x,rate});}
  hist.push(byAction);if(hist.length>HISTORY)hist.shift();
  $("ready").textContent=d.ready?"ready":"NOT READY";$("ready").className="pill "+(d.ready?"ok":"bad");
  if(!d.ready)$("ready").title=d.not_ready_because.join("; ");
  const st=d.store.health?d.store.health.state:"ok";$("storepill").textContent="store "+(d.store.backend||d.store.health.backend)+": "+st;
  $("storepill").className="pill "+(st==="ok"?"ok":st==="degraded"?"warn":"bad");
  $("policy").textContent="policy "+d.policy.name+" · version "+d.policy.version+(d.policy.monitor?" · MONITOR MODE":"");
  $("uptime").textContent="up "+ago(d.uptime);
  const k=$("kpis");k.replaceChildren(el("div",{class:"kpi"},el("div",{class:"big",id:"rps"},fmt(total)),el("div",{class:"sub"},"requests/s")));
  for(const a of ACTIONS)if(byAction[a]!==undefined)k.append(el("div",{class:"kpi"},el("div",{class:"big","data-action":a},fmt(byAction[a])),el("div",{class:"sub"},a+"/s")));
  drawSpark();
  rules.sort((a,b)=>b.rate-a.rate||b.count-a.count);
  fill("rules",rules.map(r=>el("tr",{},el("td",{},r.rule),el("td",{},r.action+(r.enforced?"":" (monitor)")),el("td",{class:"n"},fmt(r.rate)),el("td",{class:"n"},r.count))),"no decisions yet",4);
  fill("topkeys",d.live.top_refused_keys.map(t=>el("tr",{},el("td",{class:"key"},t.key),el("td",{class:"n"},t.refused))),"nothing refused yet");
  fill("bans",d.bans.map(b=>b.error?el("tr",{},el("td",{colspan:3,class:"empty"},b.error)):el("tr",{},el("td",{class:"key"},b.key),el("td",{},b.reason||"-"),el("td",{class:"n"},ago(b.seconds_left)))),"no active bans",3);
  const sigs=Object.entries(d.live.signals),smax=Math.max(1,...sigs.map(s=>s[1]));
  fill("signals",sigs.map(([n,c])=>{const bar=el("div",{class:"bar"});bar.style.width=(100*c/smax)+"%";return el("tr",{},el("td",{class:"key"},n),el("td",{class:"n"},c),el("td",{},bar));}),"no signals seen yet",3);
  const sc=$("scores");sc.replaceChildren();const names=Object.keys(d.live.scores);
  if(!names.length)sc.append(el("div",{class:"empty"},"no score decided a request yet"));
  for(const n of names){const bins=d.live.scores[n],m=Math.max(1,...bins);const t=el("table",{},el("tr",{},el("th",{},"score "+n),el("th",{class:"n"},"decisions"),el("th",{class:"w40"},"")));
    bins.forEach((c,i)=>{const bar=el("div",{class:"bar"});bar.style.width=(100*c/m)+"%";t.append(el("tr",{},el("td",{},d.live.score_bins[i]),el("td",{class:"n"},c),el("td",{},bar)));});sc.append(t);}
  const ch=d.challenges,issued=(ch["issued.pow"]||0)+(ch["issued.wait"]||0),solved=(ch["pow.ok"]||0)+(ch["wait.ok"]||0);
  $("chkpis").replaceChildren(el("div",{class:"kpi"},el("div",{class:"big"},issued),el("div",{class:"sub"},"issued")),
    el("div",{class:"kpi"},el("div",{class:"big"},solved),el("div",{class:"sub"},"solved")),
    el("div",{class:"kpi"},el("div",{class:"big",id:"solverate"},issued?Math.round(100*solved/issued)+"%":"–"),el("div",{class:"sub"},"solve rate")));
  fill("challenges",Object.entries(ch).sort().map(([n,c])=>el("tr",{},el("td",{},n),el("td",{class:"n"},c))),"no challenge activity");
  const h=d.store.health||{},rows=[["store backend",h.backend],["store state",h.state+(h.error?" — "+h.error:"")],["fail mode",h.fail_mode],
    ["tracked keys",d.tracked_keys],["engine errors",d.engine_errors],["policy file",d.policy.file],["policy rules",d.policy.rules],
    ["policy loaded",ago(d.time-d.policy.loaded_at)+" ago"],["last reload",d.reload.last_result+(d.reload.last_error?" — "+d.reload.last_error:"")]];
  fill("state",rows.map(([a,b])=>el("tr",{},el("th",{},a),el("td",{class:"key"},b===undefined||b===null?"-":b))),"");
  prev=d;document.body.dataset.updated=String(d.time);
}
function drawSpark(){const svg=$("spark");svg.replaceChildren();const lg=$("legend");lg.replaceChildren();
  const max=Math.max(1,...hist.map(h=>Object.values(h).reduce((a,b)=>a+b,0)));const w=300/(HISTORY-1);
  for(const a of ACTIONS){if(!hist.some(h=>h[a]))continue;const pts=hist.map((h,i)=>(i*w).toFixed(1)+","+(88-86*(h[a]||0)/max).toFixed(1)).join(" ");
    const pl=document.createElementNS("http://www.w3.org/2000/svg","polyline");pl.setAttribute("points",pts);pl.setAttribute("fill","none");
    pl.setAttribute("stroke",color(a));pl.setAttribute("stroke-width","2");svg.append(pl);
    const sw=el("span",{class:"sw"});sw.style.background=color(a);lg.append(el("span",{},sw,a));}}
async function poll(){try{const r=await fetch("dashboard/data",{cache:"no-store"});if(!r.ok)throw new Error("HTTP "+r.status);render(await r.json());$("err").textContent="";}
  catch(e){$("err").textContent="cannot reach the shield: "+e.message;}finally{setTimeout(poll,POLL_MS);}}
poll();
</script></body></html>
"""
