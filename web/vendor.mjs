// Copies the pinned Uppy bundle into service/static/vendor, where the app serves it as is.
// Run after changing the pin: `npm ci --prefix web && npm run --prefix web vendor`.
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const target = join(here, '..', 'service', 'static', 'vendor')
const uppy = join(here, 'node_modules', 'uppy')
const { version } = JSON.parse(readFileSync(join(uppy, 'package.json'), 'utf8'))
mkdirSync(target, { recursive: true })
copyFileSync(join(uppy, 'dist', 'uppy.min.js'), join(target, 'uppy.min.js'))
copyFileSync(join(uppy, 'LICENSE'), join(target, 'uppy.LICENSE'))
console.log(`vendored uppy ${version} into ${target}`)
