"""autolabel.evaluate"""
