"""`lare infer`: answer one question about one image and show where each latent step looked."""

from __future__ import annotations

import argparse

import torch


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("infer", help="answer a question about an image with a LaRe model")
    parser.add_argument("--model", required=True,
                        help="a saved LaRe model directory (with its processor), or 'tiny' for a random tiny model")
    parser.add_argument("--image", required=True, help="path of the image")
    parser.add_argument("--question", required=True)
    parser.add_argument("--heatmap", default=None, help="write the per-step refocus heatmap to this PNG")
    parser.add_argument("--latent-steps", type=int, default=None, help="T (default: the model's)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.set_defaults(handler=run_infer)


def run_infer(args: argparse.Namespace) -> int:
    from lare import LaReConfig, LaReForConditionalGeneration, LaReProcessor
    from lare.data.images import open_image

    if args.model == "tiny":
        torch.manual_seed(0)
        model, processor = LaReForConditionalGeneration(LaReConfig.tiny()), LaReProcessor.tiny()
    else:
        model = LaReForConditionalGeneration.from_pretrained(args.model)
        processor = LaReProcessor.from_pretrained(args.model)
    model = model.to(args.device).eval()
    image = open_image(args.image)
    batch = processor(images=[image], text=[args.question], return_tensors="pt").to(args.device)
    out = model.generate(**batch, latent_steps=args.latent_steps, max_new_tokens=args.max_new_tokens,
                         do_sample=False, eos_token_id=processor.tokenizer.eos_token_id,
                         return_dict_in_generate=True)
    answer = processor.batch_decode(out.sequences, skip_special_tokens=True)[0].strip()
    steps = int(out.latent_steps_taken[0])
    print(f"answer: {answer}")
    print(f"latent steps taken: {steps}")
    for step in range(steps):
        r0, c0, r1, c1 = out.windows[0, step].tolist()
        print(f"  step {step + 1}: window rows {r0}:{r1}, cols {c0}:{c1}")
    if args.heatmap and steps:
        from lare.analysis.heatmaps import RefocusTrace, plot_refocus_grid

        trace = RefocusTrace(image=image, saliency=out.saliency[0].cpu(), windows=out.windows[0].cpu(),
                             step_mask=torch.arange(out.saliency.shape[1]) < steps, title=args.question[:30],
                             text=answer)
        print(f"heatmap: {plot_refocus_grid([trace], args.heatmap)}")
    return 0
