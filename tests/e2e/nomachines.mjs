// The page on a device without trainable data: node nomachines.mjs <url> <token> <outdir>
// The daemon's machines folder holds one folder without data, so no demo fleet is made and nothing loads.
import { launch, steps, check, main } from './lib.mjs';

const [url, , outdir] = process.argv.slice(2);
if (!url || !outdir) {
  console.log('usage: node nomachines.mjs <url> <token> <outdir>');
  process.exit(2);
}

main(async () => {
  const { ctx, page, guards } = await launch({ url, outdir });
  const { step, shot } = steps(page, outdir);
  await step('no machines: a clear message and how to add data or create the demo fleet', async () => {
    await page.goto(`${url}#/train`);
    await page.waitForSelector('#no-machines');
    const text = await page.textContent('#no-machines');
    for (const want of ['No machines with trainable data', '/machines/', 'millwright simulate --out', 'machine.toml', 'Folders that could not be read']) {
      check(text.includes(want), `the message lacks “${want}”: ${text}`);
    }
    check(await page.$('#start-training') === null, 'a start button is offered without machines');
    await shot('20-no-machines');
  });
  await step('the other views say there is nothing yet', async () => {
    for (const [view, want] of [['results', 'No trained models yet.'], ['predict', 'No machines yet.'], ['progress', 'No training job yet.'], ['queue', 'No jobs match.']]) {
      await page.click(`a[data-view=${view}]`);
      await page.waitForSelector(`text=${want}`);
    }
  });
  await step('no request left localhost and the page logged no errors', async () => {
    console.log(`     ${guards()} requests, all local`);
  });
  await ctx.close();
});
